/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host-wide commands: each sends admin requests to tidald (include/tidal/memctl-proto.h)
 * and shows the VMs as Hyper-V Manager does, one row per VM with its memory columns. The
 * daemon's reply is treated as untrusted: a member that is missing or of the wrong type shows
 * as "?", and text is printed only as printable ASCII.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memctl/ctl.h"
#include "tidal/api.h"
#include "tidal/json.h"
#include "tidal/memctl-proto.h"
#include "tidal/parse.h"

#define CELL_MAX           (MEMCTL_NAME_MAX + 1)
#define DEFAULT_INTERVAL_S 1
#define CLEAR_SCREEN       "\033[H\033[2J"

enum column {
        COL_NAME,
        COL_STATE,
        COL_STARTUP,
        COL_MINIMUM,
        COL_MAXIMUM,
        COL_ASSIGNED,
        COL_DEMAND,
        COL_BUFFER,
        COL_WEIGHT,
        COL_STATUS,
        COLUMNS,
};

/* Hyper-V Manager's memory columns; sizes and numbers are right-aligned. */
static const struct {
        const char *title;
        const char *key; /* the size member shown, for the size columns */
        bool right;
} columns[COLUMNS] = {
        [COL_NAME] = {"Name", NULL, false},
        [COL_STATE] = {"State", NULL, false},
        [COL_STARTUP] = {"Startup", MEMCTL_KEY_STARTUP, true},
        [COL_MINIMUM] = {"Minimum", MEMCTL_KEY_MINIMUM, true},
        [COL_MAXIMUM] = {"Maximum", MEMCTL_KEY_MAXIMUM, true},
        [COL_ASSIGNED] = {"Assigned", MEMCTL_KEY_ASSIGNED, true},
        [COL_DEMAND] = {"Demand", MEMCTL_KEY_DEMAND, true},
        [COL_BUFFER] = {"Buffer", NULL, true},
        [COL_WEIGHT] = {"Weight", NULL, true},
        [COL_STATUS] = {"Status", NULL, false},
};

struct row {
        char cell[COLUMNS][CELL_MAX];
};

/* Copies text from the daemon as printable ASCII, truncated to the cell. */
static void copy_text(char *dst, size_t size, const char *src)
{
        size_t i;

        for (i = 0; src[i] && i + 1 < size; i++)
                dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
        dst[i] = '\0';
}

static const char *get_string(struct json_object *o, const char *key)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* A non-negative integer member. */
static bool get_uint(struct json_object *o, const char *key, uint64_t *ret)
{
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                return false;
        *ret = json_object_get_uint64(v);
        return true;
}

static void text_cell(char *cell, struct json_object *vm, const char *key)
{
        const char *s = get_string(vm, key);

        copy_text(cell, CELL_MAX, s ? s : "?");
}

/* A size, or "-" for a null member (no demand reported yet), or "?" for anything else. */
static void size_cell(char *cell, struct json_object *vm, const char *key)
{
        struct json_object *v;
        uint64_t bytes;

        if (get_uint(vm, key, &bytes))
                format_size(bytes, cell, CELL_MAX);
        else if (json_object_object_get_ex(vm, key, &v) && json_object_is_type(v, json_type_null))
                snprintf(cell, CELL_MAX, "-");
        else
                snprintf(cell, CELL_MAX, "?");
}

static void number_cell(char *cell, struct json_object *vm, const char *key, const char *unit)
{
        uint64_t v;

        if (get_uint(vm, key, &v))
                snprintf(cell, CELL_MAX, "%llu%s", (unsigned long long)v, unit);
        else
                snprintf(cell, CELL_MAX, "?");
}

/* OK / Low / Warning, with "(Paging)" while smart paging backs part of the guest's memory. */
static void status_cell(char *cell, struct json_object *vm)
{
        const char *status = get_string(vm, MEMCTL_KEY_STATUS);
        struct json_object *paging, *active;
        char text[CELL_MAX];

        copy_text(text, sizeof(text), status ? status : "?");
        if (json_object_object_get_ex(vm, MEMCTL_KEY_PAGING, &paging) &&
            json_object_object_get_ex(paging, "active", &active) &&
            json_object_is_type(active, json_type_boolean) && json_object_get_boolean(active))
                snprintf(cell, CELL_MAX, "%.16s (Paging)", text);
        else
                snprintf(cell, CELL_MAX, "%s", text);
}

static void fill_row(struct row *row, struct json_object *vm)
{
        text_cell(row->cell[COL_NAME], vm, MEMCTL_KEY_NAME);
        text_cell(row->cell[COL_STATE], vm, "state");
        for (size_t c = COL_STARTUP; c <= COL_DEMAND; c++)
                size_cell(row->cell[c], vm, columns[c].key);
        number_cell(row->cell[COL_BUFFER], vm, MEMCTL_KEY_BUFFER, "%");
        number_cell(row->cell[COL_WEIGHT], vm, MEMCTL_KEY_WEIGHT, "");
        status_cell(row->cell[COL_STATUS], vm);
}

static void print_cells(FILE *f, const char (*cell)[CELL_MAX], const int *width)
{
        for (size_t c = 0; c < COLUMNS; c++) {
                const char *sep = c + 1 < COLUMNS ? "  " : "\n";

                if (columns[c].right)
                        fprintf(f, "%*s%s", width[c], cell[c], sep);
                else if (c + 1 < COLUMNS)
                        fprintf(f, "%-*s%s", width[c], cell[c], sep);
                else /* no trailing blanks */
                        fprintf(f, "%s%s", cell[c], sep);
        }
}

/* The rows under a header line, every column as wide as its widest cell. */
static void print_table(FILE *f, const struct row *rows, size_t n)
{
        char header[COLUMNS][CELL_MAX];
        int width[COLUMNS];

        for (size_t c = 0; c < COLUMNS; c++) {
                snprintf(header[c], CELL_MAX, "%s", columns[c].title);
                width[c] = (int)strlen(header[c]);
                for (size_t i = 0; i < n; i++) {
                        int w = (int)strlen(rows[i].cell[c]);

                        if (w > width[c])
                                width[c] = w;
                }
        }
        print_cells(f, (const char(*)[CELL_MAX])header, width);
        for (size_t i = 0; i < n; i++)
                print_cells(f, rows[i].cell, width);
}

/* The VMs of a list reply as a table. 0 or -EPROTO (no "vms" array), -ENOMEM. */
static int print_vms(FILE *f, struct json_object *vms)
{
        _cleanup_free_ struct row *rows = NULL;
        size_t n;

        if (!json_object_is_type(vms, json_type_array))
                return -EPROTO;
        n = json_object_array_length(vms);
        rows = calloc(n ? n : 1, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *vm = json_object_array_get_idx(vms, i);

                if (!json_object_is_type(vm, json_type_object))
                        return -EPROTO;
                fill_row(&rows[i], vm);
        }
        print_table(f, rows, n);
        if (n == 0)
                fprintf(f, "(no VMs)\n");
        return 0;
}

/* "Host: budget 14 GiB, granted 6 GiB, free 8 GiB" and what else the daemon knows. */
static void print_host(FILE *f, struct json_object *host)
{
        static const struct {
                const char *key, *label;
        } amounts[] = {
                {"budget_bytes", "budget"},
                {"granted_bytes", "granted"},
                {"free_bytes", "free"},
        };
        uint64_t v, total;
        char size[32];

        fprintf(f, "Host:");
        for (size_t i = 0; i < ARRAY_SIZE(amounts); i++)
                fprintf(f, "%s %s %s", i ? "," : "", amounts[i].label,
                        get_uint(host, amounts[i].key, &v) ? format_size(v, size, sizeof(size))
                                                           : "?");
        /* Held for VMs being admitted: not granted yet, not free either. */
        if (get_uint(host, "reserved_bytes", &v) && v > 0)
                fprintf(f, ", reserved %s", format_size(v, size, sizeof(size)));
        if (get_uint(host, "host_available_bytes", &v) &&
            get_uint(host, "host_total_bytes", &total)) {
                fprintf(f, "; MemAvailable %s", format_size(v, size, sizeof(size)));
                fprintf(f, " of %s", format_size(total, size, sizeof(size)));
        }
        fputc('\n', f);
}

static int print_list(FILE *f, struct json_object *reply)
{
        struct json_object *vms, *host;
        int r;

        if (!json_object_object_get_ex(reply, "vms", &vms))
                return -EPROTO;
        r = print_vms(f, vms);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(reply, "host", &host) &&
            json_object_is_type(host, json_type_object)) {
                fputc('\n', f);
                print_host(f, host);
        }
        return 0;
}

/* {"cmd":CMD}. NULL when out of memory. */
static struct json_object *request_new(const char *cmd)
{
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_object_object_add(o, API_KEY_CMD, json_object_new_string(cmd)) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* One list request, printed as a table (or raw with --json). Returns an exit status. */
static int list_once(struct ctl *ctl)
{
        _cleanup_json_ struct json_object *request = request_new(MEMCTL_CMD_LIST);
        _cleanup_json_ struct json_object *reply = NULL;
        int status, r;

        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        status = ctl_host_call(ctl, "list", request, &reply);
        if (status != CTL_EXIT_OK || ctl->json)
                return status;
        r = print_list(stdout, reply);
        if (r == -ENOMEM)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        if (r < 0)
                return ctl_fail(CTL_EXIT_UNREACHABLE,
                                "list: the reply has no \"vms\" array of objects");
        return CTL_EXIT_OK;
}

static int cmd_list(struct ctl *ctl, int argc, char **argv)
{
        return list_once(ctl);
}

static void sleep_s(unsigned seconds)
{
        struct timespec ts = {.tv_sec = seconds};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Clears the terminal and says what is shown and how to leave. */
static void print_top_title(unsigned interval)
{
        time_t now = time(NULL);
        struct tm tm;
        char clock[16] = "";

        if (localtime_r(&now, &tm))
                strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
        printf(CLEAR_SCREEN "tidalctl top: every %u s, %s (Ctrl-C to quit)\n\n", interval, clock);
}

static int cmd_top(struct ctl *ctl, int argc, char **argv)
{
        unsigned interval = ctl->given & CTL_OPT_INTERVAL ? ctl->interval_s : DEFAULT_INTERVAL_S;
        /* On a terminal the table is redrawn in place; into a pipe or file, tables follow. */
        bool tty = isatty(STDOUT_FILENO) && !ctl->json;

        for (unsigned i = 0; !(ctl->given & CTL_OPT_COUNT) || i < ctl->count; i++) {
                int status;

                if (i > 0)
                        sleep_s(interval);
                if (tty)
                        print_top_title(interval);
                else if (i > 0 && !ctl->json)
                        fputc('\n', stdout);
                status = list_once(ctl);
                fflush(stdout);
                if (status != CTL_EXIT_OK)
                        return status;
        }
        return CTL_EXIT_OK;
}

/* {"cmd":"set","name":NAME} with the settings given as options. NULL when out of memory. */
static struct json_object *set_request_new(const struct ctl *ctl, const char *name)
{
        const struct {
                unsigned bit;
                const char *key;
                uint64_t value;
        } settings[] = {
                {CTL_OPT_MINIMUM, MEMCTL_KEY_MINIMUM, ctl->minimum},
                {CTL_OPT_MAXIMUM, MEMCTL_KEY_MAXIMUM, ctl->maximum},
                {CTL_OPT_BUFFER, MEMCTL_KEY_BUFFER, ctl->buffer},
                {CTL_OPT_WEIGHT, MEMCTL_KEY_WEIGHT, ctl->weight},
        };
        struct json_object *o = request_new(MEMCTL_CMD_SET);

        if (!o || json_object_object_add(o, MEMCTL_KEY_NAME, json_object_new_string(name)) < 0)
                goto fail;
        for (size_t i = 0; i < ARRAY_SIZE(settings); i++)
                if ((ctl->given & settings[i].bit) &&
                    json_object_object_add(o, settings[i].key,
                                           json_object_new_uint64(settings[i].value)) < 0)
                        goto fail;
        return o;
fail:
        json_object_put(o);
        return NULL;
}

static int cmd_set(struct ctl *ctl, int argc, char **argv)
{
        const unsigned settings =
                CTL_OPT_MINIMUM | CTL_OPT_MAXIMUM | CTL_OPT_BUFFER | CTL_OPT_WEIGHT;
        _cleanup_json_ struct json_object *request = NULL;
        _cleanup_json_ struct json_object *reply = NULL;
        struct json_object *vm;
        struct row row;
        int status;

        if (argv[0][0] == '\0' || strlen(argv[0]) > MEMCTL_NAME_MAX)
                return ctl_fail(CTL_EXIT_USAGE, "set: a VM name is 1 to %d characters",
                                MEMCTL_NAME_MAX);
        if (!(ctl->given & settings))
                return ctl_fail(CTL_EXIT_USAGE, "set: give at least one of --minimum, --maximum, "
                                                "--buffer, --weight");
        request = set_request_new(ctl, argv[0]);
        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        status = ctl_host_call(ctl, "set", request, &reply);
        if (status != CTL_EXIT_OK || ctl->json)
                return status;
        if (!json_object_object_get_ex(reply, "vm", &vm) ||
            !json_object_is_type(vm, json_type_object))
                return ctl_fail(CTL_EXIT_UNREACHABLE, "set: the reply has no \"vm\" object");
        fill_row(&row, vm);
        print_table(stdout, &row, 1);
        return CTL_EXIT_OK;
}

/* Prometheus text: printable ASCII and newlines only, so a hostile reply cannot drive the tty. */
static void print_metrics(FILE *f, const char *text)
{
        size_t len = strlen(text);

        for (const char *p = text; *p; p++)
                fputc(*p == '\n' || (*p >= 0x20 && *p < 0x7f) ? *p : '?', f);
        if (len > 0 && text[len - 1] != '\n')
                fputc('\n', f);
}

static int cmd_metrics(struct ctl *ctl, int argc, char **argv)
{
        _cleanup_json_ struct json_object *request = request_new(MEMCTL_CMD_METRICS);
        _cleanup_json_ struct json_object *reply = NULL;
        const char *text;
        int status;

        if (!request)
                return ctl_fail(CTL_EXIT_FAILED, "out of memory");
        status = ctl_host_call(ctl, "metrics", request, &reply);
        if (status != CTL_EXIT_OK || ctl->json)
                return status;
        text = get_string(reply, "text");
        if (!text)
                return ctl_fail(CTL_EXIT_UNREACHABLE, "metrics: the reply has no \"text\"");
        print_metrics(stdout, text);
        return CTL_EXIT_OK;
}

const struct ctl_command ctl_host_commands[] = {
        {"list", "", "the VMs' memory: one row per VM, and the host's budget", 0, 0, false,
         cmd_list, 0},
        {"set", "NAME", "change a VM's Minimum, Maximum, Buffer or Weight (runtime rules apply)", 1,
         1, false, cmd_set, CTL_OPT_MINIMUM | CTL_OPT_MAXIMUM | CTL_OPT_BUFFER | CTL_OPT_WEIGHT},
        {"top", "", "the list, refreshed live", 0, 0, false, cmd_top,
         CTL_OPT_INTERVAL | CTL_OPT_COUNT},
        {"metrics", "", "the daemon's metrics in Prometheus text format", 0, 0, false, cmd_metrics,
         0},
};
const size_t ctl_host_commands_count = ARRAY_SIZE(ctl_host_commands);
