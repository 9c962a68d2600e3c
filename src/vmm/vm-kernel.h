/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Which kernel a boot enters: the decompressed one from the kernel cache, entered directly, or
 * the bzImage with its own decompressor (docs/tidal.md, "Kernel cache").
 */
#pragma once

#include "vmm/boot/boot.h"
#include "vmm/vm-internal.h"

/*
 * Called once the boot files are open and mapped: opens this kernel's cache entry, or, when it
 * is missing, decompresses the kernel into the cache on an idle-priority thread for the next
 * boot. Never fails: without a usable cache the guest decompresses, as it always can.
 */
void vmm_kernel_cache_open(struct vmm *vmm, const struct guest_mem *plan);

/*
 * Fills spec->direct and spec->virt_offset for this boot when the cached kernel can be
 * entered (maps it; vmm_kernel_unmap() releases it), else leaves them empty.
 */
void vmm_kernel_prepare(struct vmm *vmm, struct boot_spec *spec, struct vmlinux *vl);
void vmm_kernel_unmap(struct vmm *vmm);
void vmm_kernel_close(struct vmm *vmm);
