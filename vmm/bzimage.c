/* bzImage loader for the Linux 64-bit boot protocol (Documentation/x86/boot.rst). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <asm/bootparam.h>

#include "vmm/boot.h"
#include "vmm/layout.h"

#define BZ_HEADER_MAGIC 0x53726448 /* "HdrS" */
#define BZ_MIN_VERSION  0x020c     /* 2.12: xloadflags with XLF_KERNEL_64 */
#define BZ_SETUP_READ   1024

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | (uint32_t)rd16(p + 2) << 16; }

int bzimage_load(int fd, uint64_t file_size, struct guest_mem *mem, enum boot_protocol want,
		 struct boot_info *bi, char *err, size_t errlen)
{
	uint8_t hdr[BZ_SETUP_READ];

	if (want == BOOT_PROTO_PVH) {
		snprintf(err, errlen, "a bzImage cannot be booted with PVH; pass the vmlinux ELF instead");
		return -ENOEXEC;
	}
	if (file_size < sizeof(hdr)) {
		snprintf(err, errlen, "file is %llu bytes, too short for a bzImage (truncated?)",
			 (unsigned long long)file_size);
		return -ENOEXEC;
	}
	if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		snprintf(err, errlen, "reading bzImage header: %s", strerror(errno));
		return -EIO;
	}
	if (rd16(hdr + 0x1fe) != 0xaa55 || rd32(hdr + 0x202) != BZ_HEADER_MAGIC) {
		snprintf(err, errlen, "not a bzImage (no boot flag 0xAA55 / \"HdrS\" magic) and not an ELF");
		return -ENOEXEC;
	}
	uint16_t version = rd16(hdr + 0x206);
	if (version < BZ_MIN_VERSION) {
		snprintf(err, errlen, "bzImage boot protocol %u.%02u is too old; mote needs 2.12+ "
			 "(Linux 3.8 or newer)", version >> 8, version & 0xff);
		return -ENOEXEC;
	}
	uint16_t xloadflags = rd16(hdr + 0x236);
	if (!(xloadflags & XLF_KERNEL_64)) {
		snprintf(err, errlen, "bzImage has no 64-bit entry point (XLF_KERNEL_64 unset); "
			 "mote boots x86_64 kernels only");
		return -ENOEXEC;
	}
	if (!(hdr[0x211] & LOADED_HIGH)) {
		snprintf(err, errlen, "bzImage is a zImage (not LOADED_HIGH); rebuild as bzImage");
		return -ENOEXEC;
	}
	unsigned setup_sects = hdr[0x1f1] ? hdr[0x1f1] : 4;
	uint64_t setup_size = (uint64_t)(setup_sects + 1) * 512;
	if (setup_size >= file_size) {
		snprintf(err, errlen, "bzImage setup (%u sectors) is larger than the file (truncated?)",
			 setup_sects);
		return -ENOEXEC;
	}
	uint64_t payload = file_size - setup_size;
	uint32_t init_size = rd32(hdr + 0x260);
	uint32_t kernel_alignment = rd32(hdr + 0x230);
	uint64_t pref_address = (uint64_t)rd32(hdr + 0x258) | (uint64_t)rd32(hdr + 0x25c) << 32;
	uint64_t load = LAYOUT_HIMEM_START;
	/* The decompressor runs from load rounded up to kernel_alignment (if
	 * relocatable), never below pref_address, and needs init_size bytes
	 * there; the initrd must stay clear of all of it. */
	uint64_t run = pref_address;
	if (hdr[0x234] && kernel_alignment && !(kernel_alignment & (kernel_alignment - 1))) {
		uint64_t aligned = (load + kernel_alignment - 1) & ~((uint64_t)kernel_alignment - 1);
		if (aligned > run)
			run = aligned;
	}
	uint64_t end = load + payload;
	if (run + init_size > end)
		end = run + init_size;
	if (run < load || end < run || !guest_mem_gpa_to_hva(mem, load, end - load)) {
		snprintf(err, errlen, "bzImage needs RAM up to %#llx (%llu MiB) to decompress; give "
			 "the VM more memory (--mem-mib)", (unsigned long long)end,
			 (unsigned long long)((end + (1 << 20) - 1) >> 20));
		return -ENOEXEC;
	}
	uint8_t *dst = guest_mem_gpa_to_hva(mem, load, payload);
	if (pread(fd, dst, payload, (off_t)setup_size) != (ssize_t)payload) {
		snprintf(err, errlen, "reading bzImage kernel: short read");
		return -EIO;
	}

	memset(bi, 0, sizeof(*bi));
	bi->format = KERNEL_BZIMAGE;
	bi->protocol = BOOT_PROTO_LINUX64;
	bi->entry = load + 0x200; /* startup_64 is 512 bytes into the protected-mode kernel */
	bi->kernel_start = load;
	bi->kernel_end = end;
	uint32_t cmdline_size = rd32(hdr + 0x238);
	bi->cmdline_max = cmdline_size ? cmdline_size : 255;
	if (bi->cmdline_max > LAYOUT_CMDLINE_MAX - 1)
		bi->cmdline_max = LAYOUT_CMDLINE_MAX - 1;
	uint32_t initrd_max = rd32(hdr + 0x22c);
	bi->initrd_addr_max = initrd_max ? initrd_max : 0x37ffffff;
	if (xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G)
		bi->initrd_addr_max = LAYOUT_MMIO_HOLE_START - 1;
	/* The setup header ends at 0x202 + the byte at 0x201. */
	uint32_t hlen = 0x202 + hdr[0x201] - SETUP_HEADER_OFFSET;
	if (hlen > SETUP_HEADER_MAX)
		hlen = SETUP_HEADER_MAX;
	memcpy(bi->setup_header, hdr + SETUP_HEADER_OFFSET, hlen);
	bi->setup_header_len = hlen;
	return 0;
}
