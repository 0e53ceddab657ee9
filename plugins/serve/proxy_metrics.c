/* The serve proxy's counts: requests by deployment and status, a latency histogram, queue and
 * replica gauges in Prometheus text; the stats snapshot the controller scales by; the access
 * log. */
#include "proxy_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const double proxy_lat_bounds[LAT_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                              0.1,    0.25,  0.5,    1,     2.5,  5,     10, 30};

static void access_line(proxy_t *p, preq_t *q, int status, size_t body_len, double secs)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(p->access, "%s %s \"%s\" %d %zu %.3fms %s\n", when,
            q->conn ? q->conn->peer : "-", q->line[0] ? q->line : "- -", status, body_len,
            secs * 1000, q->dep ? q->dep->name : "-");
}

void proxy_metrics_count(proxy_t *p, preq_t *q, int status, size_t body_len)
{
    if (status < 100 || status > 599)
        status = 500;
    double secs = (double)(uv_hrtime() - q->t0) / 1e9;
    dep_t *d = q->dep;
    if (d) {
        d->by_status[status]++;
        int b = 0;
        while (b < LAT_BUCKETS && secs > proxy_lat_bounds[b])
            b++;
        d->lat_buckets[b]++;
        d->lat_sum += secs;
        d->lat_count++;
    } else {
        p->none_by_status[status]++;
    }
    if (p->access)
        access_line(p, q, status, body_len, secs);
}

static void status_lines(sbuf_t *b, const char *metric, const char *dep, const uint64_t *counts,
                         bool errors_only)
{
    for (int s = 100; s < 600; s++)
        if (counts[s] && (!errors_only || s >= 400))
            sbuf_printf(b, "%s{deployment=\"%s\",status=\"%d\"} %llu\n", metric, dep, s,
                        (unsigned long long)counts[s]);
}

void proxy_metrics_text(proxy_t *p, sbuf_t *b)
{
    sbuf_puts(b, "# HELP luray_serve_requests_total HTTP requests answered, by deployment and "
                 "status.\n# TYPE luray_serve_requests_total counter\n");
    for (dep_t *d = p->deps; d; d = d->next)
        status_lines(b, "luray_serve_requests_total", d->name, d->by_status, false);
    status_lines(b, "luray_serve_requests_total", "", p->none_by_status, false);
    sbuf_puts(b, "# HELP luray_serve_errors_total HTTP requests answered with a 4xx or 5xx status."
                 "\n# TYPE luray_serve_errors_total counter\n");
    for (dep_t *d = p->deps; d; d = d->next)
        status_lines(b, "luray_serve_errors_total", d->name, d->by_status, true);
    status_lines(b, "luray_serve_errors_total", "", p->none_by_status, true);
    sbuf_puts(b, "# HELP luray_serve_request_latency_seconds Time from a request's arrival to "
                 "its response.\n# TYPE luray_serve_request_latency_seconds histogram\n");
    for (dep_t *d = p->deps; d; d = d->next) {
        uint64_t cum = 0;
        for (int i = 0; i <= LAT_BUCKETS; i++) {
            cum += d->lat_buckets[i];
            if (i < LAT_BUCKETS)
                sbuf_printf(b, "luray_serve_request_latency_seconds_bucket{deployment=\"%s\","
                               "le=\"%g\"} %llu\n", d->name, proxy_lat_bounds[i],
                            (unsigned long long)cum);
            else
                sbuf_printf(b, "luray_serve_request_latency_seconds_bucket{deployment=\"%s\","
                               "le=\"+Inf\"} %llu\n", d->name, (unsigned long long)cum);
        }
        sbuf_printf(b, "luray_serve_request_latency_seconds_sum{deployment=\"%s\"} %.6f\n",
                    d->name, d->lat_sum);
        sbuf_printf(b, "luray_serve_request_latency_seconds_count{deployment=\"%s\"} %llu\n",
                    d->name, (unsigned long long)d->lat_count);
    }
    sbuf_puts(b, "# HELP luray_serve_queue_length Requests waiting in the proxy for a replica."
                 "\n# TYPE luray_serve_queue_length gauge\n");
    for (dep_t *d = p->deps; d; d = d->next)
        sbuf_printf(b, "luray_serve_queue_length{deployment=\"%s\"} %d\n", d->name, d->qlen);
    sbuf_puts(b, "# HELP luray_serve_ongoing_requests Requests sent to replicas and not answered "
                 "yet.\n# TYPE luray_serve_ongoing_requests gauge\n");
    for (dep_t *d = p->deps; d; d = d->next) {
        int n = 0;
        for (rep_t *r = d->reps; r; r = r->next)
            n += r->inflight;
        sbuf_printf(b, "luray_serve_ongoing_requests{deployment=\"%s\"} %d\n", d->name, n);
    }
    sbuf_puts(b, "# HELP luray_serve_replicas Replicas taking requests.\n"
                 "# TYPE luray_serve_replicas gauge\n");
    for (dep_t *d = p->deps; d; d = d->next)
        if (d->live)
            sbuf_printf(b, "luray_serve_replicas{deployment=\"%s\"} %d\n", d->name, d->n_active);
    sbuf_printf(b, "# HELP luray_serve_connections Open HTTP connections.\n"
                   "# TYPE luray_serve_connections gauge\nluray_serve_connections %d\n",
                p->nconns);
}

void proxy_metrics_routes(proxy_t *p, sbuf_t *b)
{
    sbuf_putc(b, '{');
    bool first = true;
    for (dep_t *d = p->deps; d; d = d->next) {
        if (!d->live)
            continue;
        sbuf_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", d->prefix, d->name);
        first = false;
    }
    sbuf_putc(b, '}');
}

void proxy_metrics_snapshot(proxy_t *p)
{
    sbuf_t b;
    sbuf_init(&b);
    sbuf_printf(&b, "{\"port\":%d,\"connections\":%d,\"deployments\":{", p->o.port, p->nconns);
    bool first = true;
    for (dep_t *d = p->deps; d; d = d->next) {
        uint64_t total = 0;
        for (int s = 100; s < 600; s++)
            total += d->by_status[s];
        int ongoing = 0;
        for (rep_t *r = d->reps; r; r = r->next)
            ongoing += r->inflight;
        sbuf_printf(&b, "%s\"%s\":{\"queued\":%d,\"ongoing\":%d,\"requests\":%llu,\"replicas\":{",
                    first ? "" : ",", d->name, d->qlen, ongoing, (unsigned long long)total);
        first = false;
        bool rf = true;
        for (rep_t *r = d->reps; r; r = r->next) {
            sbuf_printf(&b, "%s\"%s\":%d", rf ? "" : ",", r->id, r->inflight);
            rf = false;
        }
        sbuf_puts(&b, "}}");
    }
    sbuf_puts(&b, "}}");
    if (b.oom) {
        sbuf_free(&b);
        return;
    }
    size_t len;
    char *s = sbuf_take(&b, &len);
    char *z = realloc(s, len + 1);
    if (!z) {
        free(s);
        return;
    }
    z[len] = 0;
    uv_mutex_lock(&p->mu);
    free(p->stats_json);
    p->stats_json = z;
    uv_mutex_unlock(&p->mu);
}
