/* The head's job manager: drivers submitted with `luray job submit`, run as `luray run` in their
 * own process group, with their logs, states and exit codes kept in the head's state folder so
 * that they outlive a head restart. Runs on the head's loop; the control channel calls it. */
#ifndef LURAY_CORE_JOBS_H
#define LURAY_CORE_JOBS_H

#include <cjson/cJSON.h>
#include <uv.h>

#include "ctl.h"

/* After job_stop's SIGTERM, the driver's group gets SIGKILL this much later. */
#define LURAY_JOBS_KILL_AFTER_MS 5000
/* The most job_logs returns at once. */
#define LURAY_JOBS_LOG_CHUNK (1u << 20)

typedef struct {
    const char *state_dir;      /* $LURAY_TMPDIR/cluster-<P>: jobs.jsonl and jobs/<id>/ */
    const char *exe;            /* the luray program the drivers run */
    const char *driver_address; /* the drivers' `luray run --address` */
    const char *token_file;     /* given to the drivers as LURAY_TOKEN_FILE (may be NULL) */
} luray_jobs_opts_t;

typedef struct luray_jobs luray_jobs_t;

/* Creates state_dir (mode 0700) and its jobs/ folder when missing, and replays jobs.jsonl: a job
 * that was running when the head went away is FAILED ("the head restarted while the job ran"),
 * and its driver, if it still runs, is ended. A torn or garbled line is logged and skipped. */
int luray_jobs_open(uv_loop_t *loop, const luray_jobs_opts_t *opts, luray_jobs_t **out,
                    char *err, size_t errlen);

/* Answers the job ops of a control request (see ctl.h), NULL for any other op:
 *   job_submit {entrypoint, args?: [str], env_vars?: {name: str}}, bytes: the packed working
 *     dir (luray_pack_dir), or none. With a working dir the entrypoint is a path inside it;
 *     without, an absolute path readable on the head, run in an empty jobs/<id>/wd.
 *     -> {ok, job_id}; a driver that cannot start makes the job FAILED, not the request.
 *   job_status {job_id} -> {ok, job_id, status, exit_code, start_time, end_time, entrypoint,
 *     message}: status PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED; times in seconds since
 *     the epoch; exit_code and end_time null while it runs.
 *   job_logs {job_id, offset} -> {ok, job_id, next_offset, done}, bytes: driver.log from offset,
 *     at most LURAY_JOBS_LOG_CHUNK; done when the job ended and nothing is left to read.
 *   job_stop {job_id} -> {ok, job_id, stopped}: SIGTERM to the driver's group, SIGKILL
 *     LURAY_JOBS_KILL_AFTER_MS later; the job ends STOPPED. stopped is false for an ended job.
 *   job_list -> {ok, jobs: [status objects, in submission order]}
 * An unknown job gets {ok:false, error:"no job JOB_ID"}. */
cJSON *luray_jobs_handle(luray_jobs_t *j, const cJSON *req, luray_ctl_bytes_t *bytes);

/* For the head's shutdown: SIGTERM to every running driver's group, up to 2 s for them to end,
 * then SIGKILL; they end STOPPED ("cluster stopped"). The memory goes once the loop has run the
 * close callbacks (uv_run after this). NULL is a no-op. */
void luray_jobs_close(luray_jobs_t *j);

#endif
