/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The per-VM commands: each sends one request to the VM's control socket. */
#include <errno.h>
#include <json-c/json.h>
#include <string.h>

#include "memctl/ctl.h"
#include "tidal/api.h"
#include "tidal/json.h"
#include "tidal/memory-settings.h"
#include "tidal/parse.h"

/* {"cmd":CMD} plus, when key is not NULL, {KEY:value}. NULL when out of memory. */
static struct json_object *request_new(const char *cmd, const char *key, uint64_t value)
{
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, API_KEY_CMD, json_object_new_string(cmd)) < 0 ||
            (key && json_object_object_add(o, key, json_object_new_uint64(value)) < 0)) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* Sends a request whose success needs only a short confirmation. */
static int simple_call(struct ctl *ctl, const char *what, const char *cmd, const char *key,
                       uint64_t value, const char *done)
{
        _cleanup_json_ struct json_object *request = request_new(cmd, key, value);
        _cleanup_json_ struct json_object *reply = NULL;
        int status;

        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        status = ctl_vm_call(ctl, what, request, &reply);
        if (status == CTL_EXIT_OK && !ctl->json)
                printf("%s\n", done);
        return status;
}

static int cmd_info(struct ctl *ctl, int argc, char **argv)
{
        _cleanup_json_ struct json_object *request = request_new(API_CMD_INFO, NULL, 0);
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *info;
        int status;

        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        status = ctl_vm_call(ctl, API_CMD_INFO, request, &reply);
        if (status != CTL_EXIT_OK || ctl->json)
                return status;
        if (!json_object_object_get_ex(reply, API_KEY_INFO, &info) ||
            !json_object_is_type(info, json_type_object))
                return ctl_fail(CTL_EXIT_UNREACHABLE, "info: the reply has no \"info\" object");
        ctl_print_info(stdout, info);
        return CTL_EXIT_OK;
}

static int cmd_balloon(struct ctl *ctl, int argc, char **argv)
{
        char done[128], size[32];
        uint64_t bytes;
        int r;

        r = parse_size(argv[0], &bytes);
        if (r >= 0 && bytes > API_BALLOON_BYTES_MAX)
                r = -ERANGE;
        if (r < 0)
                return ctl_fail(CTL_EXIT_USAGE,
                                "balloon: '%s' is not a size from 0 to 1T (like 512M or 2G)",
                                argv[0]);
        snprintf(done, sizeof(done), "balloon target set to %s",
                 format_size(bytes, size, sizeof(size)));
        return simple_call(ctl, "balloon", API_CMD_BALLOON_SET, API_KEY_BYTES, bytes, done);
}

static int cmd_stats_period(struct ctl *ctl, int argc, char **argv)
{
        char done[128];
        uint64_t seconds;

        if (parse_uint(argv[0], 0, API_STATS_PERIOD_MAX, &seconds) < 0)
                return ctl_fail(CTL_EXIT_USAGE,
                                "stats-period: '%s' is not a number of seconds from 0 to %d",
                                argv[0], API_STATS_PERIOD_MAX);
        if (seconds == 0)
                snprintf(done, sizeof(done), "guest statistics turned off");
        else
                snprintf(done, sizeof(done), "guest statistics every %llu s",
                         (unsigned long long)seconds);
        return simple_call(ctl, "stats-period", API_CMD_STATS_PERIOD, API_KEY_SECONDS, seconds,
                           done);
}

/* One KEY=VALUE of the memory command into the request. 0, or a usage error reported. */
static int add_memory_setting(struct json_object *request, const char *arg)
{
        static const struct {
                const char *name, *key;
                bool size;
                uint64_t max;
        } settings[] = {
                {"minimum", API_KEY_MINIMUM, true, API_MEMORY_BYTES_MAX},
                {"maximum", API_KEY_MAXIMUM, true, API_MEMORY_BYTES_MAX},
                {"buffer", API_KEY_BUFFER, false, MEM_BUFFER_MAX},
                {"weight", API_KEY_WEIGHT, false, MEM_WEIGHT_MAX},
        };
        const char *eq = strchr(arg, '=');
        uint64_t v;

        for (size_t i = 0; eq && i < ARRAY_SIZE(settings); i++) {
                if (strlen(settings[i].name) != (size_t)(eq - arg) ||
                    strncmp(arg, settings[i].name, (size_t)(eq - arg)) != 0)
                        continue;
                if ((settings[i].size ? parse_size(eq + 1, &v)
                                      : parse_uint(eq + 1, 0, UINT32_MAX, &v)) < 0 ||
                    v > settings[i].max)
                        return ctl_fail(CTL_EXIT_USAGE, "memory: '%s' is not a valid %s", eq + 1,
                                        settings[i].name);
                if (json_object_object_add(request, settings[i].key, json_object_new_uint64(v)) < 0)
                        return ctl_fail(CTL_EXIT_FAILED, "out of memory");
                return 0;
        }
        return ctl_fail(CTL_EXIT_USAGE,
                        "memory: '%s' is not minimum=SIZE, maximum=SIZE, buffer=PERCENT or "
                        "weight=N",
                        arg);
}

static int cmd_memory(struct ctl *ctl, int argc, char **argv)
{
        _cleanup_json_ struct json_object *request = request_new(API_CMD_MEMORY_SET, NULL, 0);
        _cleanup_json_ struct json_object *reply = NULL;
        int status;

        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        for (int i = 0; i < argc; i++) {
                status = add_memory_setting(request, argv[i]);
                if (status != 0)
                        return status;
        }
        status = ctl_vm_call(ctl, "memory", request, &reply);
        if (status == CTL_EXIT_OK && !ctl->json)
                printf("memory settings changed\n");
        return status;
}

static int cmd_shutdown(struct ctl *ctl, int argc, char **argv)
{
        return simple_call(ctl, "shutdown", API_CMD_SHUTDOWN, NULL, 0, "shutdown requested");
}

static int cmd_reboot(struct ctl *ctl, int argc, char **argv)
{
        return simple_call(ctl, "reboot", API_CMD_REBOOT, NULL, 0, "reboot requested");
}

const struct ctl_command ctl_vm_commands[] = {
        {"info", "", "show the VM's configuration, state, memory and balloon", 0, 0, true, cmd_info,
         0},
        {"balloon", "SIZE", "set the balloon's target size (memory taken from the guest)", 1, 1,
         true, cmd_balloon, 0},
        {"stats-period", "SECONDS", "how often the guest reports memory statistics (0: never)", 1,
         1, true, cmd_stats_period, 0},
        {"memory", "KEY=VALUE...",
         "change dynamic memory: minimum=SIZE (lower only), maximum=SIZE (raise only), "
         "buffer=PERCENT, weight=N",
         1, 4, true, cmd_memory, 0},
        {"shutdown", "", "stop the VM", 0, 0, true, cmd_shutdown, 0},
        {"reboot", "", "reboot the guest", 0, 0, true, cmd_reboot, 0},
};
const size_t ctl_vm_commands_count = ARRAY_SIZE(ctl_vm_commands);
