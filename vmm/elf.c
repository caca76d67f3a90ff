/* ELF64 kernel loader: PVH unikernels and Linux vmlinux. */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/boot.h"
#include "vmm/layout.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define ELF_MAX_PHDRS 64
#define ELF_MAX_NOTES_SIZE (64 * 1024)

static int pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* file shorter than its headers claim */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int elf_find_pvh_entry(const uint8_t *notes, size_t len, uint64_t *entry)
{
	size_t off = 0;

	while (len - off >= sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;

		memcpy(&nh, notes + off, sizeof(nh));
		off += sizeof(nh);
		/* Name and descriptor are each padded to 4 bytes; compute in
		 * 64 bits so huge sizes cannot wrap. */
		uint64_t namesz = ((uint64_t)nh.n_namesz + 3) & ~3ULL;
		uint64_t descsz = ((uint64_t)nh.n_descsz + 3) & ~3ULL;
		if (namesz > len - off || descsz > len - off - namesz)
			return -EINVAL;
		const uint8_t *name = notes + off;
		const uint8_t *desc = notes + off + namesz;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    memcmp(name, "Xen", 4) == 0) {
			if (nh.n_descsz == 4) {
				uint32_t v;
				memcpy(&v, desc, 4);
				*entry = v;
			} else if (nh.n_descsz == 8) {
				uint64_t v;
				memcpy(&v, desc, 8);
				*entry = v;
			} else {
				return -EINVAL;
			}
			return 0;
		}
		off += namesz + descsz;
	}
	return -ENOENT;
}

static int elf_check_header(const Elf64_Ehdr *eh, uint64_t file_size, char *err, size_t errlen)
{
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) {
		snprintf(err, errlen, "not an ELF file (bad magic)");
		return -ENOEXEC;
	}
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB) {
		snprintf(err, errlen, "ELF is not 64-bit little-endian; mote boots x86_64 kernels only");
		return -ENOEXEC;
	}
	if (eh->e_machine != EM_X86_64) {
		snprintf(err, errlen, "ELF machine is %u, not x86_64 (%u)", eh->e_machine, EM_X86_64);
		return -ENOEXEC;
	}
	if (eh->e_type != ET_EXEC) {
		snprintf(err, errlen, "ELF type %u is not an executable (ET_EXEC)", eh->e_type);
		return -ENOEXEC;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
	    eh->e_phnum > ELF_MAX_PHDRS) {
		snprintf(err, errlen, "ELF has %u program headers of %u bytes; expected 1-%d of %zu",
			 eh->e_phnum, eh->e_phentsize, ELF_MAX_PHDRS, sizeof(Elf64_Phdr));
		return -ENOEXEC;
	}
	uint64_t ph_bytes = (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (eh->e_phoff > file_size || ph_bytes > file_size - eh->e_phoff) {
		snprintf(err, errlen, "ELF program headers lie outside the file (truncated?)");
		return -ENOEXEC;
	}
	return 0;
}

static int elf_load_segment(int fd, uint64_t file_size, const Elf64_Phdr *ph,
			    struct guest_mem *mem, unsigned idx, char *err, size_t errlen)
{
	if (ph->p_filesz > ph->p_memsz) {
		snprintf(err, errlen, "ELF segment %u: file size %#llx exceeds memory size %#llx",
			 idx, (unsigned long long)ph->p_filesz, (unsigned long long)ph->p_memsz);
		return -ENOEXEC;
	}
	if (ph->p_offset > file_size || ph->p_filesz > file_size - ph->p_offset) {
		snprintf(err, errlen, "ELF segment %u: data at %#llx+%#llx lies past the end of the "
			 "%llu-byte file (truncated image?)", idx, (unsigned long long)ph->p_offset,
			 (unsigned long long)ph->p_filesz, (unsigned long long)file_size);
		return -ENOEXEC;
	}
	if (ph->p_paddr < LAYOUT_HIMEM_START) {
		snprintf(err, errlen, "ELF segment %u: physical address %#llx is below 1 MiB, where "
			 "mote keeps boot structures", idx, (unsigned long long)ph->p_paddr);
		return -ENOEXEC;
	}
	uint8_t *dst = guest_mem_gpa_to_hva(mem, ph->p_paddr, ph->p_memsz);
	if (!dst) {
		snprintf(err, errlen, "ELF segment %u: [%#llx, +%#llx) is outside guest RAM or overlaps "
			 "the MMIO hole at %#llx; give the VM more memory (--mem-mib) or relink",
			 idx, (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz,
			 LAYOUT_MMIO_HOLE_START);
		return -ENOEXEC;
	}
	int ret = pread_exact(fd, dst, ph->p_filesz, ph->p_offset);
	if (ret) {
		snprintf(err, errlen, "ELF segment %u: read failed: %s", idx, strerror(-ret));
		return ret;
	}
	guest_mem_zero(dst + ph->p_filesz, ph->p_memsz - ph->p_filesz);
	return 0;
}

static int elf_read_pvh_note(int fd, uint64_t file_size, const Elf64_Phdr *ph,
			     uint64_t *entry, char *err, size_t errlen)
{
	if (ph->p_offset > file_size || ph->p_filesz > file_size - ph->p_offset ||
	    ph->p_filesz > ELF_MAX_NOTES_SIZE) {
		snprintf(err, errlen, "ELF note segment lies outside the file or is too large");
		return -ENOEXEC;
	}
	uint8_t *buf = malloc(ph->p_filesz ? ph->p_filesz : 1);
	if (!buf)
		return -ENOMEM;
	int ret = pread_exact(fd, buf, ph->p_filesz, ph->p_offset);
	if (ret == 0) {
		ret = elf_find_pvh_entry(buf, ph->p_filesz, entry);
		if (ret == -EINVAL) {
			snprintf(err, errlen, "ELF note segment is malformed (a note runs past its end)");
			ret = -ENOEXEC;
		}
	} else {
		snprintf(err, errlen, "ELF note segment: read failed: %s", strerror(-ret));
	}
	free(buf);
	return ret;
}

int elf_load(int fd, uint64_t file_size, struct guest_mem *mem, enum boot_protocol want,
	     struct boot_info *bi, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	Elf64_Phdr phs[ELF_MAX_PHDRS];
	uint64_t pvh_entry = 0;
	bool have_pvh = false;
	bool loaded = false;
	int ret;

	if (file_size < sizeof(eh)) {
		snprintf(err, errlen, "file is %llu bytes, too short for an ELF header (truncated?)",
			 (unsigned long long)file_size);
		return -ENOEXEC;
	}
	ret = pread_exact(fd, &eh, sizeof(eh), 0);
	if (ret) {
		snprintf(err, errlen, "reading ELF header: %s", strerror(-ret));
		return ret;
	}
	ret = elf_check_header(&eh, file_size, err, errlen);
	if (ret)
		return ret;
	ret = pread_exact(fd, phs, eh.e_phnum * sizeof(Elf64_Phdr), eh.e_phoff);
	if (ret) {
		snprintf(err, errlen, "reading ELF program headers: %s", strerror(-ret));
		return ret;
	}

	memset(bi, 0, sizeof(*bi));
	bi->format = KERNEL_ELF;
	bi->kernel_start = UINT64_MAX;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		const Elf64_Phdr *ph = &phs[i];

		if (ph->p_type == PT_NOTE && !have_pvh) {
			ret = elf_read_pvh_note(fd, file_size, ph, &pvh_entry, err, errlen);
			if (ret == 0)
				have_pvh = true;
			else if (ret != -ENOENT)
				return ret;
			continue;
		}
		if (ph->p_type != PT_LOAD || ph->p_memsz == 0)
			continue;
		ret = elf_load_segment(fd, file_size, ph, mem, i, err, errlen);
		if (ret)
			return ret;
		loaded = true;
		if (ph->p_paddr < bi->kernel_start)
			bi->kernel_start = ph->p_paddr;
		if (ph->p_paddr + ph->p_memsz > bi->kernel_end)
			bi->kernel_end = ph->p_paddr + ph->p_memsz;
	}
	if (!loaded) {
		snprintf(err, errlen, "ELF has no loadable segment");
		return -ENOEXEC;
	}

	if (want == BOOT_PROTO_PVH && !have_pvh) {
		snprintf(err, errlen, "PVH boot requested but the ELF has no XEN_ELFNOTE_PHYS32_ENTRY "
			 "note; build the kernel with CONFIG_PVH=y or boot it with --boot-protocol linux");
		return -ENOEXEC;
	}
	if (have_pvh && want != BOOT_PROTO_LINUX64) {
		bi->protocol = BOOT_PROTO_PVH;
		bi->entry = pvh_entry;
	} else {
		bi->protocol = BOOT_PROTO_LINUX64;
		/* Linux links vmlinux with ENTRY(phys_startup_64): a physical address. */
		bi->entry = eh.e_entry;
	}
	if (bi->entry < bi->kernel_start || bi->entry >= bi->kernel_end) {
		snprintf(err, errlen, "ELF entry point %#llx lies outside the loaded segments "
			 "[%#llx, %#llx)", (unsigned long long)bi->entry,
			 (unsigned long long)bi->kernel_start, (unsigned long long)bi->kernel_end);
		return -ENOEXEC;
	}
	/* PVH has no limit of its own; Linux's x86 COMMAND_LINE_SIZE is 2048. */
	bi->cmdline_max = bi->protocol == BOOT_PROTO_PVH ? LAYOUT_CMDLINE_MAX - 1 : 2047;
	bi->initrd_addr_max = LAYOUT_MMIO_HOLE_START - 1;
	return 0;
}
