/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the engine tells the world: its statistics and the error that stopped it. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "smartpage/engine.h"
#include "tidal/log.h"

/* Called with the lock held. The first error stops paging; later ones add nothing. */
void engine_fail(struct smartpage *sp, int error, const char *what)
{
        uint64_t one = 1;

        if (sp->error)
                return;
        sp->error = error < 0 ? error : -EIO;
        log_errno(sp->error, "smart paging stopped: %s", what);
        if (write(sp->error_fd, &one, sizeof(one)) < 0)
                log_warn_errno(errno, "smart paging: cannot signal the error");
        if (sp->on_error)
                sp->on_error(sp->error, sp->userdata);
        pthread_cond_broadcast(&sp->cond);
}

void smartpage_get_stats(struct smartpage *sp, struct smartpage_stats *ret)
{
        uint64_t end;

        pthread_mutex_lock(&sp->lock);
        end = sp->end_ns ? sp->end_ns : monotonic_ns();
        *ret = (struct smartpage_stats){
                .active = sp->registered && !sp->finished,
                .file_bytes = sp->pt.paged * PAGE,
                .pages_in = sp->count.pages_in,
                .pages_out = sp->count.pages_out,
                .resident_bytes = sp->pt.resident * PAGE,
                .limit_bytes = sp->limit_pages * PAGE,
                .faults = sp->count.faults,
                .minor_faults = sp->count.minor_faults,
                .discarded = sp->count.discarded,
                .stream_faults = sp->count.stream_faults,
                .dropped_behind = sp->count.dropped_behind,
                .active_ms = sp->start_ns ? (end - sp->start_ns) / 1000000u : 0,
                .error = sp->error,
        };
        pthread_mutex_unlock(&sp->lock);
}

int smartpage_error_fd(struct smartpage *sp)
{
        return sp->error_fd;
}
