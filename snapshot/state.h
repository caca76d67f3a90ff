/* The snapshot state file: a self-checking container of sections.
 *
 *   header   "MOTESNAP", u16 major, u16 minor, u32 nr_sections,
 *            u64 total_len (the whole file), u64 reserved
 *   sections u32 tag, u32 instance, u64 len, len bytes, zero padding to 8
 *   trailer  u32 CRC-32 (IEEE) of every byte before it, "END!"
 *
 * All integers little-endian (the host's: snapshots restore on x86 only).
 * A reader accepts any minor of its major: a newer minor may add sections
 * (ignored) but never changes one. Each component writes its own sections
 * (fixed structs with their own magic/version, see snapshot.c, kvm.c,
 * virtio/mmio.c); this file knows only the container. Everything here is
 * pure computation, so the parser can be unit-tested and fuzzed. */
#ifndef MOTE_SNAPSHOT_STATE_H
#define MOTE_SNAPSHOT_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "MOTESNAP"
#define SNAP_MAJOR 1
#define SNAP_MINOR 0
#define SNAP_TRAILER_MAGIC "END!"
#define SNAP_HEADER_SIZE 32
#define SNAP_SECTION_HDR 16
#define SNAP_TRAILER_SIZE 8
#define SNAP_MAX_SECTIONS 4096
#define SNAP_MAX_FILE (64u << 20)

enum snap_tag {
	SNAP_SEC_CONFIG = 1,   /* machine config (struct snap_config) */
	SNAP_SEC_MEMORY,       /* the memory file it pairs with (struct snap_memory) */
	SNAP_SEC_DRIVE,        /* instance = drive index (struct snap_drive) */
	SNAP_SEC_VCPU,         /* instance = vCPU index (struct snap_vcpu) */
	SNAP_SEC_IRQCHIP,      /* in-kernel irqchip: instance = chip id: 0 PIC master, 1 slave,
				* 2 IOAPIC */
	SNAP_SEC_PIT,          /* in-kernel irqchip: struct kvm_pit_state2 */
	SNAP_SEC_CLOCK,        /* struct kvm_clock_data */
	SNAP_SEC_SERIAL,       /* struct snap_serial */
	SNAP_SEC_I8042,        /* struct snap_i8042 */
	SNAP_SEC_VIRTIO,       /* instance = virtio slot: transport + device state */
	SNAP_SEC_VSOCK,        /* the vsock device's config (struct snap_vsock) */
	SNAP_SEC_NET,          /* instance = interface index (struct snap_net) */
	SNAP_SEC_IOAPIC,       /* split irqchip: mote's IOAPIC (struct ioapic_state) */
	SNAP_SEC_CPUID,        /* instance = vCPU index: its CPUID table (struct kvm_cpuid2 and
				* its entries); older snapshots have none */
};

/* A state file being built, in memory. */
struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	uint32_t nr_sections;
	int err;               /* first -errno; later calls do nothing */
};

void snap_writer_init(struct snap_writer *w);
/* Appends a section; its space is returned for the caller to fill (NULL
 * after an error). */
void *snap_writer_section(struct snap_writer *w, uint32_t tag, uint32_t instance, size_t len);
int snap_writer_add(struct snap_writer *w, uint32_t tag, uint32_t instance, const void *data,
		    size_t len);
/* Writes header and trailer; returns 0 with *out and *len (owned by w) or -errno. */
int snap_writer_finish(struct snap_writer *w, const uint8_t **out, size_t *len);
void snap_writer_free(struct snap_writer *w);

struct snap_section {
	uint32_t tag, instance;
	const uint8_t *data;
	uint64_t len;
};

/* A parsed state file: views into the caller's buffer. */
struct snap_state {
	uint16_t major, minor;
	uint32_t nr_sections;
	struct snap_section *sections; /* malloc'd */
};

/* Checks and indexes buf: size, magic, major, total length, CRC, every
 * section inside the file. Returns 0, or -EINVAL (-ENOMEM) with a message
 * saying what is wrong in err ("truncated: ...", "wrong magic", ...). */
int snap_state_parse(const uint8_t *buf, size_t len, struct snap_state *st, char *err,
		     size_t errlen);
void snap_state_free(struct snap_state *st);
/* The section (tag, instance), or NULL. */
const struct snap_section *snap_state_find(const struct snap_state *st, uint32_t tag,
					   uint32_t instance);
unsigned snap_state_count(const struct snap_state *st, uint32_t tag);

uint32_t snap_crc32(uint32_t crc, const void *data, size_t len);

#endif
