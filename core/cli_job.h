/* `luray job`: submitting drivers to a head's job manager over the control channel, and
 * following, listing and stopping them. */
#ifndef LURAY_CORE_CLI_JOB_H
#define LURAY_CORE_CLI_JOB_H

/* main's own argc and argv, argv[1] being "job". Returns the exit status: 0 on success (for
 * `submit` without --no-wait: the job SUCCEEDED), 1 on failure (one line on stderr), 2 for a
 * usage error. */
int luray_cli_job(int argc, char **argv);

#endif
