#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Validates tidal's ACPI tables with the real ACPICA tools (Debian: acpica-tools):
#  - iasl -d disassembles every table without an error or warning (bad checksums, bad lengths,
#    unknown opcodes and malformed resource descriptors are all reported that way);
#  - the disassembly compiles back (iasl, no optimisations) to byte-identical tables;
#  - the disassembly says what tidal needs: \_S5, \_SB.PCI0 and its _CRS windows, COM1,
#    hardware-reduced FADT with sleep/reset registers, one local APIC per vCPU;
#  - acpiexec loads FADT+MADT+DSDT, evaluates \_S5 and \_SB.PCI0._CRS and runs the S5 path,
#    which must take the hardware-reduced (sleep control register) route.
#
# Usage: acpi-iasl.sh path/to/test-acpi-tables
# Exit status: 0 pass, 1 fail, 77 skip (iasl not installed; meson's "skipped").
set -eu

bin=${1:?usage: $0 path/to/test-acpi-tables}

if ! command -v iasl >/dev/null 2>&1; then
        echo "iasl not found (apt-get install acpica-tools); skipping"
        exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

fail() {
        echo "FAIL: $*"
        failed=1
}

# Pattern must match in file.
expect() {
        grep -q -e "$2" "$1" || fail "$1: no match for: $2"
}

# Anything iasl or acpiexec prints as a problem. The banner and field names never match.
problems() {
        grep -i -E 'warning|error|exception|invalid|incorrect|AE_[A-Z]' "$1" || true
}

TIDAL_ACPI_DUMP_DIR=$tmp "$bin" >"$tmp/unit.log" 2>&1 || {
        cat "$tmp/unit.log"
        echo "FAIL: $bin"
        exit 1
}
cd "$tmp"

for dat in apic-*.dat dsdt-*.dat facp-*.dat xsdt-*.dat; do
        base=${dat%.dat}
        sig=${base%-*}
        if ! iasl -d "$dat" >"$base.dis.log" 2>&1; then
                cat "$base.dis.log"
                fail "iasl -d $dat"
                continue
        fi
        p=$(problems "$base.dis.log")
        [ -z "$p" ] || fail "iasl -d $dat: $p"

        # Round trip. -oa keeps name paths exactly as disassembled (iasl would otherwise drop
        # the redundant '\' in "Scope (\_SB)"). The header differs (compiler ID), the rest not.
        mkdir -p "rt-$base"
        if ! iasl -oa -p "rt-$base/$sig" "$base.dsl" >"$base.asm.log" 2>&1; then
                cat "$base.asm.log"
                fail "iasl $base.dsl"
                continue
        fi
        grep -q 'Compilation successful. 0 Errors, 0 Warnings, 0 Remarks' "$base.asm.log" ||
                fail "iasl $base.dsl: $(grep -E 'Compilation|Error|Warning|Remark' "$base.asm.log")"
        tail -c +37 "rt-$base/$sig.aml" >"$base.rt.body"
        tail -c +37 "$dat" >"$base.body"
        cmp -s "$base.rt.body" "$base.body" || fail "$dat: recompiled disassembly differs"
done

for n in 1 8 255; do
        d=dsdt-$n.dsl
        expect "$d" 'DefinitionBlock ("", "DSDT", 2, "TIDAL ", "TIDALVM ", 0x00000001)'
        expect "$d" '^    Name (_S5, Package (0x04)'
        grep -A2 'Name (_S5, Package (0x04)' "$d" | tail -1 | grep -q '^ *0x05, *$' ||
                fail "$d: \\_S5 SLP_TYPa is not 5"
        expect "$d" '^    Scope (\\_SB)'
        expect "$d" '^        Device (PCI0)'
        expect "$d" 'Name (_HID, EisaId ("PNP0A08")'
        expect "$d" 'Name (_CID, EisaId ("PNP0A03")'
        expect "$d" 'Name (_SEG, Zero)'
        expect "$d" 'Name (_BBN, Zero)'
        expect "$d" 'WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,'
        expect "$d" '0x0CF8,             // Range Minimum'
        expect "$d" '0x0CF7,             // Range Maximum'
        expect "$d" '0x0D00,             // Range Minimum'
        expect "$d" '0xFFFF,             // Range Maximum'
        expect "$d" 'DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite,'
        expect "$d" '0xC0000000,         // Range Minimum'
        expect "$d" '0xFEBFFFFF,         // Range Maximum'
        expect "$d" '^        Device (COM1)'
        expect "$d" 'EisaId ("PNP0501")'
        expect "$d" '0x03F8,             // Range Minimum'
        expect "$d" '{4}'
        if [ "$n" = 1 ]; then
                ! grep -q QWordMemory "$d" || fail "$d: 64-bit window without one configured"
        else
                expect "$d" '0x0000008000000000, // Range Minimum'
                expect "$d" '0x000000FFFFFFFFFF, // Range Maximum'
        fi

        f=facp-$n.dsl
        expect "$f" 'Table Length : 00000114'
        expect "$f" 'Revision : 06'
        expect "$f" 'Hardware Reduced (V5) : 1'
        expect "$f" 'Reset Register Supported (V2) : 1'
        expect "$f" 'MSI Not Supported (V4) : 0'
        expect "$f" 'Value to cause reset : 01'
        for reg in 'Reset Register:0000000000000602' 'Sleep Control Register:0000000000000600' \
                'Sleep Status Register:0000000000000601'; do
                name=${reg%:*}
                addr=${reg#*:}
                grep -A5 "$name : \\[Generic Address Structure\\]" "$f" >"$f.gas"
                expect "$f.gas" 'Space ID : 01 \[SystemIO\]'
                expect "$f.gas" 'Bit Width : 08'
                expect "$f.gas" "Address : $addr"
        done

        a=apic-$n.dsl
        got=$(grep -c 'Subtable Type : 00 \[Processor Local APIC\]' "$a" || true)
        [ "$got" = "$n" ] || fail "$a: $got local APICs, expected $n"
        expect "$a" 'Subtable Type : 01 \[I/O APIC\]'
        expect "$a" 'Local Apic Address : FEE00000'

        x=xsdt-$n.dsl
        got=$(grep -c 'ACPI Table Address' "$x" || true)
        [ "$got" = 2 ] || fail "$x: $got entries, expected 2 (FADT, MADT)"
done

if command -v acpiexec >/dev/null 2>&1; then
        for n in 1 255; do
                log=acpiexec-$n.log
                timeout 60 acpiexec -b 'Evaluate \_S5; Evaluate \_SB.PCI0._CRS; Sleep 5' \
                        "facp-$n.dat" "apic-$n.dat" "dsdt-$n.dat" >"$log" 2>&1 ||
                        fail "acpiexec ($n CPUs) exited with $?"
                p=$(problems "$log")
                [ -z "$p" ] || fail "acpiexec ($n CPUs): $p"
                expect "$log" 'Register values for sleep state S5: Sleep-A: 05'
                expect "$log" 'HwExtendedSleep.*Entering sleep state \[S5\]'
                expect "$log" 'Evaluation of \\_SB.PCI0._CRS returned'
        done
else
        echo "acpiexec not found; skipping the namespace evaluation"
fi

if [ "$failed" != 0 ]; then
        echo "ACPI tables left in $tmp for inspection"
        trap - EXIT
        exit 1
fi
echo "ACPI tables pass iasl/acpiexec validation"
