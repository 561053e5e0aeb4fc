// SPDX-License-Identifier: MIT
/* ACPI tables: the walk Linux does, RSDP → XSDT → MADT, on tables built in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "arch/x86/acpi.h"

#define GPA 0xe0000

static uint64_t le(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;

	while (n--)
		v = (v << 8) | p[n];
	return v;
}

static const uint8_t *at(const uint8_t *buf, uint64_t gpa)
{
	return buf + (gpa - GPA);
}

/* The table the XSDT lists with this signature, as Linux looks tables up. */
static const uint8_t *find_table(const uint8_t *buf, const char *sig)
{
	const uint8_t *xsdt = at(buf, le(buf + 24, 8));
	size_t n;

	assert_memory_equal(xsdt, "XSDT", 4);
	n = (le(xsdt + 4, 4) - 36) / 8;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *t = at(buf, le(xsdt + 36 + 8 * i, 8));

		if (!memcmp(t, sig, 4))
			return t;
	}
	fail_msg("no %s table in the XSDT", sig);
	return NULL;
}

static const uint8_t *find_madt(const uint8_t *buf)
{
	return find_table(buf, "APIC");
}

static void test_rsdp_checksums_and_points_to_xsdt(void **state)
{
	uint8_t buf[4096];
	long len = acpi_build_tables(buf, sizeof(buf), GPA, 1);

	assert_true(len > 36);
	assert_memory_equal(buf, "RSD PTR ", 8);
	assert_int_equal(buf[15], 2);
	assert_int_equal(acpi_checksum(buf, 20), 0);
	assert_int_equal(acpi_checksum(buf, 36), 0);
	assert_int_equal(le(buf + 20, 4), 36);
	find_madt(buf);
}

static void test_tables_checksum_to_zero(void **state)
{
	uint8_t buf[4096];
	const uint8_t *madt, *xsdt;

	assert_true(acpi_build_tables(buf, sizeof(buf), GPA, 4) > 0);
	xsdt = at(buf, le(buf + 24, 8));
	madt = find_madt(buf);
	assert_int_equal(acpi_checksum(xsdt, le(xsdt + 4, 4)), 0);
	assert_int_equal(acpi_checksum(madt, le(madt + 4, 4)), 0);
}

static void count_madt(const uint8_t *madt, unsigned int *lapics, unsigned int *ioapics,
		       uint8_t *ioapic_id, unsigned int *max_apic)
{
	size_t len = le(madt + 4, 4);

	*lapics = *ioapics = *max_apic = 0;
	for (size_t off = 44; off < len;) {
		const uint8_t *e = madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= len);
		if (e[0] == 0) {
			assert_int_equal(e[4] & 1, 1); /* enabled */
			if (e[3] > *max_apic)
				*max_apic = e[3];
			(*lapics)++;
		} else if (e[0] == 1) {
			*ioapic_id = e[2];
			assert_int_equal(le(e + 4, 4), IOAPIC_ADDR);
			(*ioapics)++;
		}
		off += e[1];
	}
}

static void test_madt_lists_every_cpu_and_one_ioapic(void **state)
{
	static const unsigned int counts[] = { 1, 2, 4, 64, 254 };
	uint8_t buf[8192];

	for (unsigned int i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		unsigned int lapics, ioapics, max_apic;
		uint8_t ioapic_id = 0;
		const uint8_t *madt;

		assert_true(acpi_build_tables(buf, sizeof(buf), GPA, counts[i]) > 0);
		madt = find_madt(buf);
		assert_memory_equal(madt, "APIC", 4);
		assert_int_equal(le(madt + 36, 4), LAPIC_ADDR);
		count_madt(madt, &lapics, &ioapics, &ioapic_id, &max_apic);
		assert_int_equal(lapics, counts[i]);
		assert_int_equal(ioapics, 1);
		assert_int_equal(max_apic, counts[i] - 1);
		assert_true(ioapic_id > max_apic); /* no APIC ID collision */
	}
}

static void test_fadt_points_to_dsdt_and_pm1_blocks(void **state)
{
	uint8_t buf[8192];
	const uint8_t *fadt, *dsdt;

	assert_true(acpi_build_tables(buf, sizeof(buf), GPA, 2) > 0);
	fadt = find_table(buf, "FACP");
	assert_int_equal(le(fadt + 4, 4), 276);
	assert_int_equal(fadt[8], 6);
	assert_int_equal(acpi_checksum(fadt, 276), 0);
	/* Not hardware-reduced: Linux keeps the legacy PIC and ISA IRQs (the UART's IRQ 4). */
	assert_int_equal(le(fadt + 112, 4) & (1U << 20), 0);
	assert_int_equal(le(fadt + 56, 4), ACPI_PM1A_EVT_PORT);
	assert_int_equal(le(fadt + 64, 4), ACPI_PM1A_CNT_PORT);
	assert_int_equal(fadt[88], 4);
	assert_int_equal(fadt[89], 2);
	assert_int_equal(le(fadt + 48, 4), 0); /* no SMI_CMD: always in ACPI mode */
	assert_int_equal(le(fadt + 40, 4), le(fadt + 140, 8));
	dsdt = at(buf, le(fadt + 140, 8));
	assert_memory_equal(dsdt, "DSDT", 4);
	assert_int_equal(acpi_checksum(dsdt, le(dsdt + 4, 4)), 0);
}

static const uint8_t *memfind(const uint8_t *hay, size_t len, const char *needle, size_t n)
{
	for (size_t i = 0; i + n <= len; i++)
		if (!memcmp(hay + i, needle, n))
			return hay + i;
	return NULL;
}

static void test_dsdt_has_pci_host_bridge_and_s5(void **state)
{
	uint8_t buf[8192];
	const uint8_t *dsdt, *hid;
	size_t len;

	assert_true(acpi_build_tables(buf, sizeof(buf), GPA, 1) > 0);
	dsdt = at(buf, le(find_table(buf, "FACP") + 140, 8));
	len = le(dsdt + 4, 4);
	assert_non_null(memfind(dsdt, len, "\\_SB_", 5));
	assert_non_null(memfind(dsdt, len, "PCI0", 4));
	/* Name(_HID, EisaId("PNP0A03")): NameOp, "_HID", DWordPrefix, 41 d0 0a 03. */
	hid = memfind(dsdt, len, "\x08_HID\x0c", 6);
	assert_non_null(hid);
	assert_memory_equal(hid + 6, "\x41\xd0\x0a\x03", 4);
	assert_non_null(memfind(dsdt, len, "_CRS", 4));
	assert_non_null(memfind(dsdt, len, "_PRT", 4));
	/* Name(\_S5_, Package(4) {5, 5, 0, 0}) */
	assert_non_null(memfind(dsdt, len, "\x08\\_S5_\x12", 7));
}

static void test_build_reports_too_small_buffer(void **state)
{
	uint8_t buf[1000];

	assert_int_equal(acpi_build_tables(buf, sizeof(buf), GPA, 8), -ENOSPC);
	assert_int_equal(acpi_build_tables(buf, 10, GPA, 1), -ENOSPC);
}

/*
 * xAPIC IDs are one byte and 0xff is the broadcast ID; the IOAPIC takes the one after the last
 * vCPU's. Past 254 vCPUs two would share an ID (found by fuzz_boot): refused instead.
 */
static void test_build_refuses_cpu_counts_apic_ids_cannot_hold(void **state)
{
	static uint8_t buf[0x20000]; /* BOOT_ACPI_SIZE */

	assert_int_equal(acpi_build_tables(buf, sizeof(buf), GPA, 0), -EINVAL);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), GPA, 255), -EINVAL);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), GPA, 256), -EINVAL);
	assert_int_equal(acpi_build_tables(buf, sizeof(buf), GPA, 510), -EINVAL);
	assert_true(acpi_build_tables(buf, sizeof(buf), GPA, 254) > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsdp_checksums_and_points_to_xsdt),
		cmocka_unit_test(test_tables_checksum_to_zero),
		cmocka_unit_test(test_madt_lists_every_cpu_and_one_ioapic),
		cmocka_unit_test(test_fadt_points_to_dsdt_and_pm1_blocks),
		cmocka_unit_test(test_dsdt_has_pci_host_bridge_and_s5),
		cmocka_unit_test(test_build_reports_too_small_buffer),
		cmocka_unit_test(test_build_refuses_cpu_counts_apic_ids_cannot_hold),
	};

	return cmocka_run_group_tests_name("acpi", tests, NULL, NULL);
}
