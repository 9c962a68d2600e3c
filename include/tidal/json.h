/* SPDX-License-Identifier: GPL-2.0-or-later */
/* json-c objects released at the end of a scope, like every other resource in tidal. */
#pragma once

#include <json-c/json.h>

#include "tidal/macro.h"

static inline void json_putp(struct json_object **o)
{
        json_object_put(*o);
}

#define _cleanup_json_ _cleanup_(json_putp)
