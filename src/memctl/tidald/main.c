/* SPDX-License-Identifier: GPL-2.0-or-later */
/* tidald: options, start-up and the orderly exit (docs/tidald.md). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "memctl/tidald/tidald.h"
#include "tidal/log.h"
#include "tidal/macro.h"
#include "tidal/parse.h"

struct options {
        const char *socket_path;
        const char *socket_group;
        const char *metrics_listen;
        uint64_t host_memory, host_reserve;
        bool verbose;
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: tidald [OPTIONS]\n"
                "Shares the host's memory between tidal VMs by weight (docs/tidald.md).\n\n"
                "  --socket PATH            listen on PATH (default %s)\n"
                "  --socket-group NAME      give the socket to group NAME (mode 0660)\n"
                "  --host-memory SIZE       memory the VMs may share (default: MemTotal - "
                "reserve)\n"
                "  --host-reserve SIZE      memory kept for the host (default: max(1G, 5%%))\n"
                "  --metrics-listen ADDR    serve Prometheus metrics on 127.0.0.1:PORT\n"
                "  -v, --verbose            log every balancing round\n"
                "  -h, --help               show this help\n"
                "  --version                show the version\n",
                MEMCTL_SOCKET_DEFAULT);
}

static int parse_size_option(const char *name, const char *arg, uint64_t *ret)
{
        if (parse_size(arg, ret) < 0 || *ret == 0)
                return log_error("%s: \"%s\" is not a size (e.g. 8G, 512M)", name, arg), -EINVAL;
        return 0;
}

/* 0 to run, 1 to exit successfully (help, version), -EINVAL on a bad command line. */
static int parse_options(int argc, char **argv, struct options *o)
{
        enum { OPT_SOCKET = 256, OPT_GROUP, OPT_MEMORY, OPT_RESERVE, OPT_METRICS, OPT_VERSION };
        static const struct option longopts[] = {
                {"socket", required_argument, NULL, OPT_SOCKET},
                {"socket-group", required_argument, NULL, OPT_GROUP},
                {"host-memory", required_argument, NULL, OPT_MEMORY},
                {"host-reserve", required_argument, NULL, OPT_RESERVE},
                {"metrics-listen", required_argument, NULL, OPT_METRICS},
                {"verbose", no_argument, NULL, 'v'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, OPT_VERSION},
                {},
        };
        int c;

        *o = (struct options){.socket_path = MEMCTL_SOCKET_DEFAULT};
        while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
                switch (c) {
                case OPT_SOCKET:
                        if (!*optarg)
                                return log_error("--socket needs a path"), -EINVAL;
                        o->socket_path = optarg;
                        break;
                case OPT_GROUP:
                        o->socket_group = optarg;
                        break;
                case OPT_MEMORY:
                        if (parse_size_option("--host-memory", optarg, &o->host_memory) < 0)
                                return -EINVAL;
                        break;
                case OPT_RESERVE:
                        if (parse_size_option("--host-reserve", optarg, &o->host_reserve) < 0)
                                return -EINVAL;
                        break;
                case OPT_METRICS:
                        o->metrics_listen = optarg;
                        break;
                case 'v':
                        o->verbose = true;
                        break;
                case 'h':
                        usage(stdout);
                        return 1;
                case OPT_VERSION:
                        printf("tidald %s\n", TIDAL_VERSION);
                        return 1;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        }
        if (optind < argc)
                return log_error("unexpected argument \"%s\"", argv[optind]), -EINVAL;
        return 0;
}

static void signal_event(void *opaque, uint32_t events)
{
        struct daemon *d = opaque;
        struct signalfd_siginfo si;

        if (read(d->signal_fd, &si, sizeof(si)) != sizeof(si))
                return;
        log_info("signal %u: exiting; the VMs keep their memory and re-register later",
                 si.ssi_signo);
        event_loop_quit(d->loop);
}

static int signals_start(struct daemon *d)
{
        sigset_t set;

        signal(SIGPIPE, SIG_IGN);
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return -errno;
        d->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (d->signal_fd < 0)
                return -errno;
        return event_loop_add_fd(d->loop, d->signal_fd, EPOLLIN, signal_event, d, &d->signal_src);
}

static int start(struct daemon *d, const struct options *o)
{
        int r;

        r = host_init(&d->host);
        if (r < 0)
                return r;
        if (d->host.budget < MEM_MINIMUM_FLOOR)
                return log_error("the host budget (%llu MiB) leaves nothing for VMs",
                                 (unsigned long long)(d->host.budget >> 20)),
                       -EINVAL;
        r = event_loop_new(&d->loop);
        if (r < 0)
                return log_errno(r, "cannot create the event loop");
        if ((r = signals_start(d)) < 0 || (r = conn_reaper_start(d)) < 0)
                return log_errno(r, "cannot set up the event loop");
        r = listen_open(d, o->socket_path, o->socket_group);
        if (r < 0)
                return r;
        if (o->metrics_listen && (r = http_start(d, o->metrics_listen)) < 0)
                return r;
        if ((r = conn_accept_start(d)) < 0 || (r = balance_start(d)) < 0)
                return log_errno(r, "cannot set up the event loop");
        host_update(d);
        log_info("listening on %s; budget %llu MiB", o->socket_path,
                 (unsigned long long)(d->host.budget >> 20));
        sd_notify(0, "READY=1");
        return 0;
}

static void stop(struct daemon *d)
{
        sd_notify(0, "STOPPING=1");
        conn_close_all(d);
        while (d->vms)
                registry_remove(d, d->vms);
        http_stop(d);
        if (d->loop) {
                event_source_free(d->listen_src);
                event_source_free(d->tick_src);
                event_source_free(d->watchdog_src);
                event_source_free(d->reap_src);
                event_source_free(d->signal_src);
        }
        listen_close(d);
        if (d->reap_fd >= 0)
                close(d->reap_fd);
        if (d->signal_fd >= 0)
                close(d->signal_fd);
        event_loop_free(d->loop);
}

int main(int argc, char **argv)
{
        struct daemon d = {.listen_fd = -1, .reap_fd = -1, .signal_fd = -1};
        struct options o;
        int r;

        log_set_prefix("tidald");
        r = parse_options(argc, argv, &o);
        if (r != 0)
                return r > 0 ? EXIT_SUCCESS : 2;
        if (o.verbose)
                log_set_level(LOG_LEVEL_DEBUG);
        d.host.fixed_memory = o.host_memory;
        d.host.reserve = o.host_reserve;
        r = start(&d, &o);
        if (r >= 0) {
                r = event_loop_run(d.loop);
                if (r < 0)
                        log_errno(r, "event loop failed");
        }
        stop(&d);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
