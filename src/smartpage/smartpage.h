/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Smart paging: keeps a guest RAM region within a resident budget by paging the rest to a file,
 * in user space, for the restart of a VM whose startup memory cannot be granted in full
 * (docs/smart-paging.md).
 *
 * The region must be a MAP_SHARED mapping of a memfd (shmem), as guest RAM is. The engine
 * registers it with userfaultfd (MISSING, MINOR and, where the kernel has it, WP modes: pages
 * read back and not written since are evicted without a write) and runs one handler thread that
 * resolves faults, reading pages from the paging file through io_uring, and evicts pages chosen
 * by a clock whose reference bits come from MINOR faults. Faults raised by KVM on behalf of the
 * guest are handled like faults of any thread of the process.
 *
 * Threads: smartpage_start/finish/free are called by one owner thread. smartpage_set_limit,
 * smartpage_discard and smartpage_get_stats may be called from any thread while paging runs.
 * No call may be made from the handler thread (the error callback runs there: it must only
 * note the error, e.g. write an eventfd, and return).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMARTPAGE_DEFAULT_DIR       "/var/lib/tidal/smartpaging"
#define SMARTPAGE_PAGE_SIZE         4096u
#define SMARTPAGE_DEFAULT_READAHEAD 15u
#define SMARTPAGE_DEFAULT_QD        64u

struct smartpage;

struct smartpage_options {
        const char *dir;          /* paging file directory; NULL: SMARTPAGE_DEFAULT_DIR */
        const char *name;         /* VM name: the file is <dir>/<name>.paging, mode 0600 */
        uint64_t resident_limit;  /* bytes of the region allowed resident; >= 64 pages */
        unsigned readahead_pages; /* neighbours read with a faulting page; 0: none */
        unsigned queue_depth;     /* io_uring entries; 0: SMARTPAGE_DEFAULT_QD */
        /*
         * Called once, from the handler thread, when paging stops on an error (negative
         * errno). Optional: the same error is also signalled on smartpage_error_fd().
         */
        void (*on_error)(int error, void *userdata);
        void *userdata;
};

struct smartpage_stats {
        bool active;             /* registered and paging */
        uint64_t file_bytes;     /* bytes of the region held only in the paging file */
        uint64_t pages_in;       /* pages read back from the file */
        uint64_t pages_out;      /* pages written to the file and dropped from RAM */
        uint64_t resident_bytes; /* bytes of the region in RAM, as the engine counts them */
        uint64_t limit_bytes;    /* the resident limit in force */
        uint64_t faults;         /* MISSING faults resolved (zero page or read) */
        uint64_t minor_faults;   /* MINOR faults: accesses sampled by the clock */
        uint64_t discarded;      /* pages dropped through smartpage_discard() */
        uint64_t stream_faults;  /* faults that continued a sequential stream */
        uint64_t dropped_behind; /* victims a stream had left behind (the others: the clock's) */
        uint64_t active_ms;      /* how long paging has been (or was) active */
        int error;               /* 0, or the negative errno that stopped paging */
};

/*
 * Takes over paging of [region, region + len): a MAP_SHARED mapping of `memfd` at file offset
 * `off`, both page aligned. Counts what is resident (the memfd's data ranges), creates the
 * paging file (a stale one of the same name is removed first), registers the region with
 * userfaultfd, evicts down to the limit and starts the handler thread.
 * Errors: -EPERM/-EACCES when userfaultfd is not permitted, -EOPNOTSUPP when the kernel lacks
 * MINOR faults on shmem, -EINVAL for bad arguments, else what the system call returned.
 */
int smartpage_start(const struct smartpage_options *o, int memfd, uint64_t off, void *region,
                    size_t len, struct smartpage **ret);

/* Changes the resident limit; a lower one is enforced by the handler at once. */
int smartpage_set_limit(struct smartpage *sp, uint64_t resident_limit);

/*
 * Pages of [offset, offset + len) of the region (page aligned) are no longer the guest's (the
 * balloon took them, or virtio-mem unplugged them): their file copy is dropped without being
 * read, and they are punched out of the memfd; the guest sees zeroes there next time.
 */
void smartpage_discard(struct smartpage *sp, uint64_t offset, uint64_t len);

/*
 * Ends paging: reads every paged-out page back in (the handler keeps serving faults
 * meanwhile), unregisters the region and deletes the paging file. Blocks until done. On an
 * error the region stays registered (unregistering would show the guest zeroes where its data
 * is in the file): the caller must stop the VM.
 */
int smartpage_finish(struct smartpage *sp);

void smartpage_get_stats(struct smartpage *sp, struct smartpage_stats *ret);

/*
 * An eventfd that becomes readable when paging stopped on an error (stats.error says which).
 * Owned by the engine.
 */
int smartpage_error_fd(struct smartpage *sp);

/*
 * Stops the handler and releases everything. Without a successful smartpage_finish() first, the
 * region is unregistered with pages still in the file: only for a VM that is being torn down
 * (its vCPUs stopped), never for one that runs on. The paging file is removed either way.
 */
void smartpage_free(struct smartpage *sp);

/* Removes a paging file left by a killed tidal for this VM name; 0 also if there was none. */
int smartpage_remove_stale(const char *dir, const char *name);

/* The paging file's path for a VM name, malloc'd; -EINVAL for a name that is not a file name. */
int smartpage_file_path(const char *dir, const char *name, char **ret);
