/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A stand-in VMM for the control-socket integration test: the real server (src/vmm/api) on a
 * real event loop, with fake callbacks that keep their state in memory.
 *
 *   api-test-server [--no-balloon] (--name NAME | SOCKET)
 *
 * Prints "ready PATH" once it listens; stops on shutdown, SIGTERM or SIGINT, removing the socket.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "tidal/api.h"
#include "tidal/event-loop.h"
#include "tidal/log.h"
#include "tidal/parse.h"
#include "vmm/api/server.h"

struct fake_vm {
        struct event_loop *loop;
        bool has_balloon;
        enum api_vm_state state;
        unsigned boots;
        uint64_t memory;
        uint64_t balloon_target;
        uint64_t stats_period;
        int signal_fd;
        struct event_source *signal_src;
};

static int fake_info(void *opaque, struct api_info *info, char *err, size_t errlen)
{
        struct fake_vm *vm = opaque;

        info->name = "fake";
        info->state = vm->state;
        info->boots = vm->boots;
        info->vcpus = 2;
        info->memory = vm->memory;
        info->kernel = "/boot/vmlinuz";
        info->cmdline = "console=ttyS0";
        info->has_balloon = vm->has_balloon;
        info->balloon = (struct api_balloon_info){
                .target = vm->balloon_target,
                .actual = vm->balloon_target / 2, /* a guest halfway there */
                .stats_period = vm->stats_period,
                .have_stats = vm->stats_period > 0,
                .stats_age_ms = 1234,
                .stats_present = 1u << 4 | 1u << 5,
                .stats = {[4] = 700 << 20, [5] = 1000 << 20},
        };
        return 0;
}

static int fake_balloon_set(void *opaque, uint64_t bytes, char *err, size_t errlen)
{
        struct fake_vm *vm = opaque;
        char size[32];

        if (!vm->has_balloon)
                return -ENODEV;
        if (bytes > vm->memory) {
                snprintf(err, errlen, "%llu bytes is more than the guest's RAM (%s)",
                         (unsigned long long)bytes, format_size(vm->memory, size, sizeof(size)));
                return -ERANGE;
        }
        vm->balloon_target = bytes;
        return 0;
}

static int fake_stats_period(void *opaque, uint64_t seconds, char *err, size_t errlen)
{
        struct fake_vm *vm = opaque;

        if (!vm->has_balloon)
                return -ENODEV;
        vm->stats_period = seconds;
        return 0;
}

static int fake_shutdown(void *opaque, char *err, size_t errlen)
{
        struct fake_vm *vm = opaque;

        vm->state = API_VM_STOPPING;
        event_loop_quit(vm->loop); /* as the VMM does: the loop stops after this round */
        return 0;
}

static int fake_reboot(void *opaque, char *err, size_t errlen)
{
        struct fake_vm *vm = opaque;

        vm->boots++;
        return 0;
}

static const struct api_ops fake_ops = {
        .info = fake_info,
        .balloon_set = fake_balloon_set,
        .stats_period = fake_stats_period,
        .shutdown = fake_shutdown,
        .reboot = fake_reboot,
};

static void on_signal(void *opaque, uint32_t events)
{
        struct fake_vm *vm = opaque;
        struct signalfd_siginfo si;

        if (read(vm->signal_fd, &si, sizeof(si)) == sizeof(si))
                event_loop_quit(vm->loop);
}

static int watch_signals(struct fake_vm *vm)
{
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        vm->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (vm->signal_fd < 0)
                return -errno;
        return event_loop_add_fd(vm->loop, vm->signal_fd, EPOLLIN, on_signal, vm, &vm->signal_src);
}

static int serve(struct fake_vm *vm, const char *path)
{
        struct api_server *server;
        const char *why = NULL;
        int r;

        r = api_server_new(vm->loop, path, &fake_ops, vm, &server, &why);
        if (r < 0)
                return log_errno(r, "control socket '%s': %s", path, why);
        printf("ready %s\n", api_server_path(server));
        fflush(stdout);
        r = event_loop_run(vm->loop);
        api_server_free(server);
        return r < 0 ? log_errno(r, "event loop failed") : 0;
}

int main(int argc, char **argv)
{
        struct fake_vm vm = {.has_balloon = true, .boots = 1, .memory = 1ULL << 30};
        char path[128];
        int i = 1, r;

        log_set_prefix("api-test-server");
        if (i < argc && strcmp(argv[i], "--no-balloon") == 0) {
                vm.has_balloon = false;
                i++;
        }
        if (i + 2 == argc && strcmp(argv[i], "--name") == 0) {
                r = api_socket_default_path(argv[i + 1], path, sizeof(path));
                if (r >= 0)
                        r = api_socket_make_dir(path);
                if (r < 0)
                        return log_errno(r, "no default socket for '%s'", argv[i + 1]), 1;
        } else if (i + 1 == argc) {
                snprintf(path, sizeof(path), "%s", argv[i]);
        } else {
                fprintf(stderr, "usage: api-test-server [--no-balloon] (--name NAME | SOCKET)\n");
                return 2;
        }
        r = event_loop_new(&vm.loop);
        if (r < 0)
                return log_errno(r, "cannot create the event loop"), 1;
        r = watch_signals(&vm);
        if (r < 0)
                log_errno(r, "cannot watch signals");
        else
                r = serve(&vm, path);
        event_source_free(vm.signal_src);
        event_loop_free(vm.loop);
        if (vm.signal_fd > 0)
                close(vm.signal_fd);
        return r < 0 ? 1 : 0;
}
