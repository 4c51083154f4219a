/*
 * ftsync-verify-stream: an independent verifier of ftsync's replication
 * stream, version 1, as defined by libftsync/doc/stream-format.md.
 *
 * It is written from that document alone and shares no code with
 * libftsync's encoder/decoder, so that each can catch the other's bugs.
 *
 *   ftsync-verify-stream [-q] [--allow-no-end] FILE
 *   ftsync-verify-stream [-q] [--allow-no-end] --back-channel [--forward FWD] FILE
 *
 * FILE (or FWD) may be "-" for standard input.  Output and exit status:
 *   0  "OK: ..."                              the stream obeys every rule
 *   1  "REJECT <RULE> at offset N: ..."       first violated rule (H*, R*, C*, D*, S*, O*, B*)
 *   2  "INCOMPLETE O10 at offset N: ..."      the sender vanished (no END, or
 *                                             the stream ends inside an epoch)
 *   3  usage error, unreadable file, out of memory (message on stderr)
 *
 * Memory is bounded: a record's length is checked against its type's
 * maximum before any of its body is read, bodies are streamed through the
 * checksum in fixed-size chunks, and only the first PREFIX_MAX bytes of a
 * body (PAGE_DATA's count and pfn list, or a whole small record) are kept.
 * The one structure that grows is the set of frames seen in epoch 0 (O7):
 * one bit per guest frame, allocated in 512-byte blocks of 4096 frames as
 * frames arrive (so at most about an eighth of the bytes read so far), and
 * freed when epoch 0 commits.
 *
 * PAGE_DATA, PAGE_DELTA and COMPRESSED bodies are kept whole (at most
 * 4 MiB, 4.2 MiB and 64 MiB, plus a COMPRESSED record's decompressed body,
 * at most its inner type's maximum).  When the guest's memory is at most
 * TRACK_BYTES_MAX (frame_count * page_size), the verifier also keeps a copy
 * of it as the backup would, epoch by epoch, to check each PAGE_DELTA
 * entry's base (D4); above that it says so and checks every other rule.
 *
 * Every integer is decoded byte by byte as little-endian, so the result is
 * the same on any host.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#define PROG "ftsync-verify-stream"

#if defined(__GNUC__)
#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define PRINTF_LIKE(fmt, args)
#endif

#define EXIT_OK 0
#define EXIT_REJECT 1
#define EXIT_INCOMPLETE 2
#define EXIT_USAGE 3

/* Stream header. */
#define HEADER_SIZE 48u
#define HEADER_CHECKSUMMED 40u
#define STREAM_VERSION 1u
#define FLAG_BACK_CHANNEL 0x1u
#define PAGE_SIZE_MIN 4096u
#define PAGE_SIZE_MAX 65536u
#define FRAME_COUNT_MAX (UINT64_C(1) << 40)

/* Record header and types. */
#define RECORD_HEADER_SIZE 16u
#define TYPE_OPTIONAL 0x80000000u
#define T_EPOCH_BEGIN 0x00000001u
#define T_PAGE_DATA 0x00000002u
#define T_DEVICE_STATE 0x00000003u
#define T_EPOCH_COMMIT 0x00000004u
#define T_HEARTBEAT 0x00000005u
#define T_END 0x00000006u
#define T_PAGE_DELTA 0x00000010u
#define T_SPEC_PAGE_DATA 0x00000011u
#define T_COMPRESSED 0x00000014u
#define T_SPEC_APPLY 0x00000015u
#define SPEC_APPLY_COUNT_MAX 65536u
#define T_ACK 0x00000101u
#define T_NACK 0x00000102u

#define MIB (UINT32_C(1) << 20)
#define PAGE_DATA_BYTES_MAX (4u * MIB) /* count * page_size */
#define DEVICE_STATE_MAX (64u * MIB)
#define DELTA_PAGE_SIZE 4096u
#define DELTA_COUNT_MAX 1024u
#define DELTA_ENTRY_HEADER 18u
#define DELTA_ENCODING_MAX (1u + DELTA_PAGE_SIZE)
#define COMPRESSED_HEADER 24u
#define CODEC_ZLIB 1u
#define CODEC_ZSTD 2u
#define TRACK_BYTES_MAX (UINT64_C(256) << 20)
#define NACK_FIXED 16u
#define NACK_MESSAGE_MAX 1024u
#define NACK_REASON_MAX 6u

/* Largest PAGE_DATA count (at the smallest page size) and the part of a
 * body kept in memory: PAGE_DATA's count, reserved and pfn list, which also
 * covers every fixed-size record and NACK's 16 + 1024 bytes. */
#define PFN_COUNT_MAX (PAGE_DATA_BYTES_MAX / PAGE_SIZE_MIN)
#define PREFIX_MAX (8u + 8u * PFN_COUNT_MAX)
#define CHUNK_SIZE 65536u

/* Which direction a record type belongs to. */
#define DIR_FORWARD 0x1u
#define DIR_BACK 0x2u

struct type_info {
	uint32_t type;
	const char *name;
	unsigned directions;
};

static const struct type_info known_types[] = {
	{ T_EPOCH_BEGIN, "EPOCH_BEGIN", DIR_FORWARD },
	{ T_PAGE_DATA, "PAGE_DATA", DIR_FORWARD },
	{ T_DEVICE_STATE, "DEVICE_STATE", DIR_FORWARD },
	{ T_EPOCH_COMMIT, "EPOCH_COMMIT", DIR_FORWARD },
	{ T_PAGE_DELTA, "PAGE_DELTA", DIR_FORWARD },
	{ T_COMPRESSED, "COMPRESSED", DIR_FORWARD },
	{ T_SPEC_PAGE_DATA, "SPEC_PAGE_DATA", DIR_FORWARD },
	{ T_SPEC_APPLY, "SPEC_APPLY", DIR_FORWARD },
	{ T_HEARTBEAT, "HEARTBEAT", DIR_FORWARD | DIR_BACK },
	{ T_END, "END", DIR_FORWARD | DIR_BACK },
	{ T_ACK, "ACK", DIR_BACK },
	{ T_NACK, "NACK", DIR_BACK },
};

/* ---- little-endian decoding --------------------------------------------- */

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* ---- verdicts ------------------------------------------------------------ */

enum outcome { OUTCOME_OK, OUTCOME_REJECT, OUTCOME_INCOMPLETE };

struct verdict {
	enum outcome outcome;
	const char *rule;
	uint64_t offset;
	char message[640];
};

/* Records the first violation; always returns false so callers can
 * "return reject(...)". */
static bool reject(struct verdict *v, const char *rule, uint64_t offset,
		   const char *fmt, ...) PRINTF_LIKE(4, 5);

static bool reject(struct verdict *v, const char *rule, uint64_t offset,
		   const char *fmt, ...)
{
	va_list ap;

	v->outcome = OUTCOME_REJECT;
	v->rule = rule;
	v->offset = offset;
	va_start(ap, fmt);
	vsnprintf(v->message, sizeof(v->message), fmt, ap);
	va_end(ap);
	return false;
}

static void incomplete(struct verdict *v, uint64_t offset, const char *fmt, ...)
	PRINTF_LIKE(3, 4);

static void incomplete(struct verdict *v, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	v->outcome = OUTCOME_INCOMPLETE;
	v->rule = "O10";
	v->offset = offset;
	va_start(ap, fmt);
	vsnprintf(v->message, sizeof(v->message), fmt, ap);
	va_end(ap);
}

/* ---- fatal conditions (not verdicts) -------------------------------------- */

_Noreturn static void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2);

_Noreturn static void fatal(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(EXIT_USAGE);
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		fatal("out of memory");
	return p;
}

/* ---- input ---------------------------------------------------------------- */

struct input {
	FILE *file;
	const char *name;
	uint64_t offset; /* bytes consumed so far */
};

static void input_open(struct input *in, const char *path)
{
	in->name = path;
	in->offset = 0;
	if (strcmp(path, "-") == 0) {
		in->file = stdin;
		return;
	}
	in->file = fopen(path, "rb");
	if (!in->file)
		fatal("cannot open %s: %s", path, strerror(errno));
}

static void input_close(struct input *in)
{
	if (in->file && in->file != stdin)
		fclose(in->file);
	in->file = NULL;
}

/* Reads up to n bytes; fewer only at end of stream. */
static size_t input_read(struct input *in, unsigned char *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		size_t r = fread(buf + got, 1, n - got, in->file);

		if (r == 0) {
			if (ferror(in->file))
				fatal("%s: read error at offset %" PRIu64 ": %s",
				      in->name, in->offset + got, strerror(errno));
			break;
		}
		got += r;
	}
	in->offset += got;
	return got;
}

/* ---- frames seen in epoch 0 (O7) ------------------------------------------ */

/* A bitmap of the frames epoch 0 carried, in 512-byte blocks of 4096
 * frames kept in an open-addressing hash table keyed by pfn / 4096.  Only
 * blocks that frames land in exist, so memory follows both the data read
 * (at most one block per pfn entry, each entry being a whole page of
 * stream) and the guest size (one bit per frame, plus the table). */
#define COV_BLOCK_SHIFT 12u
#define COV_BLOCK_FRAMES (UINT64_C(1) << COV_BLOCK_SHIFT)
#define COV_BLOCK_WORDS (COV_BLOCK_FRAMES / 64u)
#define COV_INITIAL_SLOTS 64u

struct coverage_slot {
	uint64_t block; /* pfn >> COV_BLOCK_SHIFT */
	uint64_t *bits; /* NULL: empty slot */
};

struct coverage {
	struct coverage_slot *slots;
	size_t capacity; /* a power of two */
	size_t used;
	uint64_t covered; /* distinct frames seen */
};

static size_t coverage_hash(uint64_t block, size_t capacity)
{
	return (size_t)((block * UINT64_C(0x9e3779b97f4a7c15)) >> 17) & (capacity - 1);
}

static void coverage_init(struct coverage *c)
{
	c->capacity = COV_INITIAL_SLOTS;
	c->slots = xcalloc(c->capacity, sizeof(*c->slots));
	c->used = 0;
	c->covered = 0;
}

static void coverage_free(struct coverage *c)
{
	if (!c->slots)
		return;
	for (size_t i = 0; i < c->capacity; i++)
		free(c->slots[i].bits);
	free(c->slots);
	c->slots = NULL;
}

static struct coverage_slot *coverage_slot(const struct coverage *c, uint64_t block)
{
	size_t i = coverage_hash(block, c->capacity);

	while (c->slots[i].bits && c->slots[i].block != block)
		i = (i + 1) & (c->capacity - 1);
	return &c->slots[i];
}

static void coverage_grow(struct coverage *c)
{
	struct coverage old = *c;

	c->capacity = old.capacity * 2;
	c->slots = xcalloc(c->capacity, sizeof(*c->slots));
	for (size_t i = 0; i < old.capacity; i++)
		if (old.slots[i].bits)
			*coverage_slot(c, old.slots[i].block) = old.slots[i];
	free(old.slots);
}

static void coverage_mark(struct coverage *c, uint64_t pfn)
{
	uint64_t block = pfn >> COV_BLOCK_SHIFT;
	uint64_t bit = pfn & (COV_BLOCK_FRAMES - 1);
	uint64_t mask = UINT64_C(1) << (bit % 64);
	struct coverage_slot *slot = coverage_slot(c, block);

	if (!slot->bits) {
		if (2 * (c->used + 1) > c->capacity) {
			coverage_grow(c);
			slot = coverage_slot(c, block);
		}
		slot->block = block;
		slot->bits = xcalloc(COV_BLOCK_WORDS, sizeof(uint64_t));
		c->used++;
	}
	if (!(slot->bits[bit / 64] & mask)) {
		slot->bits[bit / 64] |= mask;
		c->covered++;
	}
}

/* Lowest pfn not seen; only meaningful while covered < frame_count, and
 * then found after at most one look-up per block that was seen. */
static uint64_t coverage_first_missing(const struct coverage *c, uint64_t frame_count)
{
	for (uint64_t block = 0; block <= (frame_count - 1) >> COV_BLOCK_SHIFT; block++) {
		const struct coverage_slot *slot = coverage_slot(c, block);
		uint64_t base = block << COV_BLOCK_SHIFT;

		if (!slot->bits)
			return base;
		for (size_t w = 0; w < COV_BLOCK_WORDS; w++) {
			unsigned b = 0;

			if (slot->bits[w] == UINT64_MAX)
				continue;
			while (slot->bits[w] >> b & 1)
				b++;
			return base + 64 * w + b;
		}
	}
	return frame_count;
}

/* ---- stream state ----------------------------------------------------------- */

struct header {
	uint32_t version;
	uint32_t flags;
	uint32_t page_size;
	uint32_t reserved;
	uint64_t frame_count;
	uint64_t session;
};

struct stream {
	struct input in;
	bool back; /* a back channel (direction bit 1) */
	bool quiet;
	bool allow_no_end;
	struct header hdr;
	bool header_ok; /* the header passed H1-H9 */

	/* Back channel only: the forward stream it answers, when known. */
	bool forward_known;
	struct header forward_hdr;
	bool forward_committed_any;
	uint64_t forward_last_committed;

	/* The record being read. */
	uint64_t rec_offset;
	uint32_t type; /* as sent, bit 31 included */
	uint32_t length;
	uint64_t checksum;
	const struct type_info *info; /* NULL: unknown optional type */
	char type_name[32];
	unsigned char prefix[PREFIX_MAX];
	size_t prefix_len;
	unsigned char chunk[CHUNK_SIZE];
	XXH3_state_t *hash;

	/* Forward stream. */
	bool epoch_open;
	uint64_t epoch;
	uint64_t epoch_offset;
	uint64_t epoch_pages; /* pfn entries in the open epoch */
	bool device_state_seen;
	uint64_t device_state_offset;
	bool committed_any;
	uint64_t last_committed;
	uint64_t epochs_committed;
	uint64_t pages_total;
	struct coverage frames0;

	/* Whole bodies of PAGE_DATA, PAGE_DELTA and COMPRESSED; `body` points
	 * at the record's body, or at `inflated` once a COMPRESSED record is
	 * unwrapped. */
	unsigned char *whole;
	size_t whole_cap;
	unsigned char *inflated;
	size_t inflated_cap;
	const unsigned char *body;
	bool unwrapped;
	uint64_t compressed_records;

	/* The guest's memory as the backup holds it (D4), when tracked:
	 * `memory` is the last committed epoch, `staged[pfn]` the open epoch's
	 * copy of a frame it touched (listed in `staged_list`). */
	bool track;
	unsigned char *memory;
	unsigned char **staged;
	uint64_t *staged_list;
	size_t staged_count;
	uint64_t delta_entries;
	/* Speculative copies staged for epoch spec_epoch (S2), when tracked. */
	unsigned char **spec;
	uint64_t *spec_list;
	size_t spec_count;
	uint64_t spec_epoch;
	uint64_t spec_applied;

	/* Both directions. */
	bool ended;
	uint64_t end_offset;
	bool heartbeat_seen;
	uint64_t heartbeat_sequence;
	uint64_t heartbeats;

	/* Back channel. */
	bool acked_any;
	uint64_t last_ack;
	uint64_t last_ack_offset;
	uint64_t acks;
	uint64_t nacks;
};

static void warn(const struct stream *s, const char *fmt, ...) PRINTF_LIKE(2, 3);

/* Things the spec describes but does not list as a rejection rule. */
static void warn(const struct stream *s, const char *fmt, ...)
{
	va_list ap;

	if (s->quiet)
		return;
	fprintf(stderr, PROG ": warning: %s: ", s->in.name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static const char *direction_name(bool back)
{
	return back ? "back channel" : "forward stream";
}

/* ---- stream header (H1-H9) -------------------------------------------------- */

static const unsigned char header_magic[8] = {
	0x46, 0x54, 0x53, 0x59, 0x4e, 0x43, 0x0d, 0x0a
};

static bool check_magic(const unsigned char *b, size_t got, struct verdict *v)
{
	size_t n = got < sizeof(header_magic) ? got : sizeof(header_magic);

	if (memcmp(b, header_magic, n) == 0)
		return true;
	return reject(v, "H1", 0,
		      "stream header: magic %02x %02x %02x %02x %02x %02x %02x %02x"
		      " is not \"FTSYNC\\r\\n\" (not an ftsync stream)",
		      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
}

static bool is_power_of_two(uint32_t x)
{
	return x != 0 && (x & (x - 1)) == 0;
}

static bool check_header_fields(const struct stream *s, const unsigned char *b,
				struct verdict *v)
{
	const struct header *h = &s->hdr;
	uint64_t stored = le64(b + HEADER_CHECKSUMMED);
	uint64_t computed = XXH3_64bits_withSeed(b, HEADER_CHECKSUMMED, 0);

	if (stored != computed)
		return reject(v, "H3", HEADER_CHECKSUMMED,
			      "stream header: checksum 0x%016" PRIx64
			      " does not match bytes 0..39 (XXH3-64 0x%016" PRIx64 ")",
			      stored, computed);
	if (h->flags & ~FLAG_BACK_CHANNEL)
		return reject(v, "H4", 12,
			      "stream header: reserved flag bits set (flags 0x%08" PRIx32 ")",
			      h->flags);
	if (h->reserved != 0)
		return reject(v, "H4", 20,
			      "stream header: reserved field is 0x%08" PRIx32 ", must be 0",
			      h->reserved);
	if (!is_power_of_two(h->page_size) || h->page_size < PAGE_SIZE_MIN ||
	    h->page_size > PAGE_SIZE_MAX)
		return reject(v, "H5", 16,
			      "stream header: page_size %" PRIu32
			      " is not a power of two in 4096..65536",
			      h->page_size);
	if (h->frame_count == 0 || h->frame_count > FRAME_COUNT_MAX)
		return reject(v, "H6", 24,
			      "stream header: frame_count %" PRIu64 " is not in 1..2^40",
			      h->frame_count);
	if (h->session == 0)
		return reject(v, "H7", 32, "stream header: session is 0");
	return true;
}

static bool check_header_direction(const struct stream *s, struct verdict *v)
{
	const struct header *h = &s->hdr;
	const struct header *f = &s->forward_hdr;
	bool back = (h->flags & FLAG_BACK_CHANNEL) != 0;

	if (back != s->back)
		return reject(v, "H8", 12,
			      "stream header: direction bit %d (%s), expected %d (%s)",
			      back, direction_name(back), s->back,
			      direction_name(s->back));
	if (!s->back || !s->forward_known)
		return true;
	if (h->page_size != f->page_size)
		return reject(v, "H8", 16,
			      "back channel header: page_size %" PRIu32
			      " differs from the forward stream's %" PRIu32,
			      h->page_size, f->page_size);
	if (h->frame_count != f->frame_count)
		return reject(v, "H8", 24,
			      "back channel header: frame_count %" PRIu64
			      " differs from the forward stream's %" PRIu64,
			      h->frame_count, f->frame_count);
	if (h->session != f->session)
		return reject(v, "H8", 32,
			      "back channel header: session 0x%016" PRIx64
			      " differs from the forward stream's 0x%016" PRIx64,
			      h->session, f->session);
	return true;
}

/* Rule order: magic (on however many bytes arrived), then version (a reader
 * cannot know how long an unknown version's header is), then truncation,
 * then the checksum, then the individual fields. */
static bool read_header(struct stream *s, struct verdict *v)
{
	unsigned char b[HEADER_SIZE];
	size_t got;

	memset(b, 0, sizeof(b));
	got = input_read(&s->in, b, HEADER_SIZE);
	if (!check_magic(b, got, v))
		return false;
	s->hdr.version = le32(b + 8);
	if (got >= 12 && s->hdr.version != STREAM_VERSION)
		return reject(v, "H2", 8,
			      "stream header: version %" PRIu32
			      ", this reader knows version %u only",
			      s->hdr.version, STREAM_VERSION);
	if (got < HEADER_SIZE)
		return reject(v, "H9", got,
			      "stream ends inside the stream header after %zu of %u bytes",
			      got, HEADER_SIZE);
	s->hdr.flags = le32(b + 12);
	s->hdr.page_size = le32(b + 16);
	s->hdr.reserved = le32(b + 20);
	s->hdr.frame_count = le64(b + 24);
	s->hdr.session = le64(b + 32);
	return check_header_fields(s, b, v) && check_header_direction(s, v);
}

/* ---- record framing (R1-R8, B2) --------------------------------------------- */

static const struct type_info *find_type(uint32_t number)
{
	for (size_t i = 0; i < sizeof(known_types) / sizeof(known_types[0]); i++)
		if (known_types[i].type == number)
			return &known_types[i];
	return NULL;
}

static uint64_t type_max_length(uint32_t number, uint32_t page_size)
{
	switch (number) {
	case T_EPOCH_BEGIN:
	case T_EPOCH_COMMIT:
	case T_HEARTBEAT:
		return 16;
	case T_PAGE_DATA: {
		uint64_t count = PAGE_DATA_BYTES_MAX / page_size;

		return 8 + count * (8 + (uint64_t)page_size);
	}
	case T_DEVICE_STATE:
		return DEVICE_STATE_MAX;
	case T_END:
		return 0;
	case T_ACK:
		return 8;
	case T_NACK:
		return NACK_FIXED + NACK_MESSAGE_MAX;
	case T_PAGE_DELTA:
		return 8 + (uint64_t)DELTA_COUNT_MAX * (DELTA_ENTRY_HEADER + DELTA_ENCODING_MAX);
	case T_COMPRESSED:
		return COMPRESSED_HEADER + (uint64_t)DEVICE_STATE_MAX;
	case T_SPEC_PAGE_DATA: {
		uint64_t count = PAGE_DATA_BYTES_MAX / page_size;

		return 16 + count * (8 + (uint64_t)page_size);
	}
	case T_SPEC_APPLY:
		return 8 + 8 * (uint64_t)SPEC_APPLY_COUNT_MAX;
	default:
		return 0;
	}
}

/* Records whose whole body the checks need. */
static bool keeps_whole_body(uint32_t number)
{
	return number == T_PAGE_DATA || number == T_PAGE_DELTA || number == T_COMPRESSED ||
	       number == T_SPEC_PAGE_DATA || number == T_SPEC_APPLY;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		fatal("out of memory");
	return q;
}

/* The current record's type for messages: its name, or its number. */
static const char *record_name(struct stream *s)
{
	if (s->info)
		return s->info->name;
	snprintf(s->type_name, sizeof(s->type_name), "optional type 0x%08" PRIx32,
		 s->type);
	return s->type_name;
}

/* R4, R5, R8/B2: what the type number alone tells. */
static bool check_type(struct stream *s, struct verdict *v)
{
	uint32_t number = s->type & ~TYPE_OPTIONAL;
	bool optional = (s->type & TYPE_OPTIONAL) != 0;
	unsigned dir = s->back ? DIR_BACK : DIR_FORWARD;

	s->info = find_type(number);
	if (number == 0)
		return reject(v, "R4", s->rec_offset,
			      "record type number 0 is never valid (type 0x%08" PRIx32 ")",
			      s->type);
	if (!s->info) {
		if (optional)
			return true; /* skipped once its checksum is checked */
		return reject(v, "R4", s->rec_offset,
			      "record type 0x%08" PRIx32
			      " is unknown and mandatory (bit 31 clear)",
			      s->type);
	}
	if (optional)
		return reject(v, "R5", s->rec_offset,
			      "%s record sent with the optional bit (type 0x%08" PRIx32
			      "); known types are always mandatory",
			      s->info->name, s->type);
	if (s->info->directions & dir)
		return true;
	if (s->back)
		return reject(v, "B2", s->rec_offset,
			      "%s is a forward-only record type, not allowed on the"
			      " back channel (R8)",
			      s->info->name);
	return reject(v, "R8", s->rec_offset,
		      "%s is a back-channel record type, not allowed on the"
		      " forward stream",
		      s->info->name);
}

#define UNKNOWN_OPTIONAL_MAX (64u * 1024 * 1024)

static bool check_max_length(const struct stream *s, struct verdict *v)
{
	uint64_t max;

	if (!s->info) {
		/* Unknown optional records: at most 64 MiB (spec, R4). */
		if (s->length <= UNKNOWN_OPTIONAL_MAX)
			return true;
		return reject(v, "R1", s->rec_offset,
			      "%s record length %" PRIu32 " exceeds the 64 MiB"
			      " bound of unknown optional records",
			      s->type_name, s->length);
	}
	max = type_max_length(s->info->type, s->hdr.page_size);
	if (s->length <= max)
		return true;
	return reject(v, "R1", s->rec_offset,
		      "%s record length %" PRIu32 " exceeds the maximum %" PRIu64
		      " for its type (page_size %" PRIu32 ")",
		      s->info->name, s->length, max, s->hdr.page_size);
}

static bool truncated(struct stream *s, struct verdict *v, const char *where)
{
	return reject(v, "R6", s->rec_offset,
		      "%s record (length %" PRIu32 ") truncated: stream ends at"
		      " offset %" PRIu64 " inside its %s",
		      record_name(s), s->length, s->in.offset, where);
}

/* Streams the body through XXH3 in chunks, keeping its first PREFIX_MAX
 * bytes; R6 if the stream ends first, R2 if the checksum differs. */
static bool read_body(struct stream *s, struct verdict *v)
{
	uint64_t seed = (uint64_t)s->type | (uint64_t)s->length << 32;
	uint64_t left = s->length;
	uint64_t computed;

	bool whole = s->info && keeps_whole_body(s->info->type);

	s->prefix_len = 0;
	s->body = s->prefix;
	s->unwrapped = false;
	if (whole) {
		if (s->whole_cap < s->length) {
			s->whole = xrealloc(s->whole, s->length);
			s->whole_cap = s->length;
		}
		s->body = s->whole;
	}
	if (XXH3_64bits_reset_withSeed(s->hash, seed) != XXH_OK)
		fatal("XXH3 reset failed");
	while (left > 0) {
		size_t want = left < CHUNK_SIZE ? (size_t)left : CHUNK_SIZE;
		size_t got = input_read(&s->in, s->chunk, want);
		size_t keep = PREFIX_MAX - s->prefix_len;

		if (keep > got)
			keep = got;
		memcpy(s->prefix + s->prefix_len, s->chunk, keep);
		s->prefix_len += keep;
		if (whole)
			memcpy(s->whole + (s->length - left), s->chunk, got);
		if (XXH3_64bits_update(s->hash, s->chunk, got) != XXH_OK)
			fatal("XXH3 update failed");
		left -= got;
		if (got < want)
			return truncated(s, v, "body");
	}
	computed = XXH3_64bits_digest(s->hash);
	if (computed == s->checksum)
		return true;
	return reject(v, "R2", s->rec_offset,
		      "%s record (length %" PRIu32 "): checksum 0x%016" PRIx64
		      " does not match its type, length and body (computed 0x%016" PRIx64
		      ")",
		      record_name(s), s->length, s->checksum, computed);
}

static bool read_padding(struct stream *s, struct verdict *v)
{
	unsigned char pad[8];
	size_t n = (8 - s->length % 8) % 8;
	uint64_t start = s->in.offset;

	if (input_read(&s->in, pad, n) < n)
		return truncated(s, v, "padding");
	for (size_t i = 0; i < n; i++)
		if (pad[i] != 0)
			return reject(v, "R3", start + i,
				      "%s record at offset %" PRIu64
				      ": padding byte %zu is 0x%02x, must be 0",
				      record_name(s), s->rec_offset, i, pad[i]);
	return true;
}

static bool check_exact_length(const struct stream *s, uint32_t want,
			       struct verdict *v)
{
	if (s->length == want)
		return true;
	return reject(v, "R7", s->rec_offset,
		      "%s body is %" PRIu32 " bytes, its layout is exactly %" PRIu32,
		      s->info->name, s->length, want);
}

/* Offset of body byte i of the current record. */
static uint64_t body_offset(const struct stream *s, uint64_t i)
{
	return s->rec_offset + RECORD_HEADER_SIZE + i;
}

/* ---- the guest's memory as the backup holds it (D4) ---------------------------- */

static void track_start(struct stream *s)
{
	uint64_t bytes = s->hdr.frame_count * (uint64_t)s->hdr.page_size;

	s->track = bytes <= TRACK_BYTES_MAX;
	if (!s->track)
		return;
	s->memory = xcalloc((size_t)bytes, 1);
	s->staged = xcalloc((size_t)s->hdr.frame_count, sizeof(*s->staged));
	s->staged_list = xcalloc((size_t)s->hdr.frame_count, sizeof(*s->staged_list));
	s->spec = xcalloc((size_t)s->hdr.frame_count, sizeof(*s->spec));
	s->spec_list = xcalloc((size_t)s->hdr.frame_count, sizeof(*s->spec_list));
}

static void spec_drop(struct stream *s)
{
	if (!s->spec)
		return;
	for (size_t i = 0; i < s->spec_count; i++) {
		free(s->spec[s->spec_list[i]]);
		s->spec[s->spec_list[i]] = NULL;
	}
	s->spec_count = 0;
}

/* The open epoch's copy of frame pfn, made from the committed one. */
static unsigned char *track_stage(struct stream *s, uint64_t pfn)
{
	size_t ps = s->hdr.page_size;

	if (!s->staged[pfn]) {
		s->staged[pfn] = xcalloc(ps, 1);
		memcpy(s->staged[pfn], s->memory + pfn * ps, ps);
		s->staged_list[s->staged_count++] = pfn;
	}
	return s->staged[pfn];
}

/* The frame as the backup holds it now: staged in this epoch, or committed. */
static const unsigned char *track_current(const struct stream *s, uint64_t pfn)
{
	if (s->staged[pfn])
		return s->staged[pfn];
	return s->memory + pfn * (size_t)s->hdr.page_size;
}

static void track_commit(struct stream *s)
{
	size_t ps = s->hdr.page_size;

	for (size_t i = 0; i < s->staged_count; i++) {
		uint64_t pfn = s->staged_list[i];

		memcpy(s->memory + pfn * ps, s->staged[pfn], ps);
		free(s->staged[pfn]);
		s->staged[pfn] = NULL;
	}
	s->staged_count = 0;
}

static void track_free(struct stream *s)
{
	spec_drop(s);
	free(s->spec);
	free(s->spec_list);
	if (s->staged)
		for (size_t i = 0; i < s->staged_count; i++)
			free(s->staged[s->staged_list[i]]);
	free(s->staged);
	free(s->staged_list);
	free(s->memory);
	free(s->whole);
	free(s->inflated);
}

/* ---- forward records (O1-O9) ------------------------------------------------ */

static bool require_open_epoch(const struct stream *s, struct verdict *v)
{
	if (s->epoch_open)
		return true;
	if (s->committed_any)
		return reject(v, "O1", s->rec_offset,
			      "%s with no open epoch (last committed epoch %" PRIu64
			      "); only EPOCH_BEGIN, SPEC_PAGE_DATA, HEARTBEAT or END may come between epochs",
			      s->info->name, s->last_committed);
	return reject(v, "O1", s->rec_offset,
		      "%s before the first EPOCH_BEGIN; only EPOCH_BEGIN, HEARTBEAT"
		      " or END may come between epochs",
		      s->info->name);
}

static bool on_epoch_begin(struct stream *s, struct verdict *v)
{
	uint64_t epoch, expected;
	uint32_t flags, reserved;

	if (!check_exact_length(s, 16, v))
		return false;
	epoch = le64(s->prefix);
	flags = le32(s->prefix + 8);
	reserved = le32(s->prefix + 12);
	if (flags != 0)
		return reject(v, "R7", body_offset(s, 8),
			      "EPOCH_BEGIN(%" PRIu64 ") flags 0x%08" PRIx32
			      " must be 0 (reserved)",
			      epoch, flags);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 12),
			      "EPOCH_BEGIN(%" PRIu64 ") reserved field 0x%08" PRIx32
			      " must be 0",
			      epoch, reserved);
	if (s->epoch_open)
		return reject(v, "O2", s->rec_offset,
			      "EPOCH_BEGIN(%" PRIu64 ") while epoch %" PRIu64
			      " (begun at offset %" PRIu64 ") is open",
			      epoch, s->epoch, s->epoch_offset);
	expected = s->committed_any ? s->last_committed + 1 : 0;
	if (epoch != expected)
		return reject(v, "O3", body_offset(s, 0),
			      "EPOCH_BEGIN epoch %" PRIu64 ", expected %" PRIu64 " (%s)",
			      epoch, expected,
			      s->committed_any ? "previous epoch + 1" : "the first epoch is 0");
	s->epoch_open = true;
	s->epoch = epoch;
	s->epoch_offset = s->rec_offset;
	s->epoch_pages = 0;
	s->device_state_seen = false;
	if (epoch == 0) {
		coverage_init(&s->frames0);
		track_start(s);
	}
	return true;
}

static bool check_page_data_layout(const struct stream *s, uint32_t *count,
				   struct verdict *v)
{
	uint64_t count_max = PAGE_DATA_BYTES_MAX / s->hdr.page_size;
	uint64_t want;
	uint32_t reserved;

	if (s->length < 8)
		return reject(v, "R7", s->rec_offset,
			      "PAGE_DATA body is %" PRIu32
			      " bytes, shorter than its 8-byte count and reserved fields",
			      s->length);
	*count = le32(s->prefix);
	reserved = le32(s->prefix + 4);
	if (*count == 0 || *count > count_max)
		return reject(v, "R7", body_offset(s, 0),
			      "PAGE_DATA count %" PRIu32 " is not in 1..%" PRIu64
			      " (4 MiB / page_size %" PRIu32 ")",
			      *count, count_max, s->hdr.page_size);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 4),
			      "PAGE_DATA reserved field 0x%08" PRIx32 " must be 0",
			      reserved);
	want = 8 + (uint64_t)*count * (8 + (uint64_t)s->hdr.page_size);
	if (s->length != want)
		return reject(v, "R7", s->rec_offset,
			      "PAGE_DATA body is %" PRIu32 " bytes, count %" PRIu32
			      " with page_size %" PRIu32 " needs exactly %" PRIu64,
			      s->length, *count, s->hdr.page_size, want);
	return true;
}

static bool on_page_data(struct stream *s, struct verdict *v)
{
	uint32_t count = 0;

	if (!check_page_data_layout(s, &count, v) || !require_open_epoch(s, v))
		return false;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t pfn = le64(s->prefix + 8 + 8 * (size_t)i);

		if (pfn >= s->hdr.frame_count)
			return reject(v, "O8", body_offset(s, 8 + 8 * (uint64_t)i),
				      "PAGE_DATA pfn[%" PRIu32 "] %" PRIu64
				      " >= frame_count %" PRIu64 " (epoch %" PRIu64 ")",
				      i, pfn, s->hdr.frame_count, s->epoch);
	}
	if (s->epoch == 0)
		for (uint32_t i = 0; i < count; i++)
			coverage_mark(&s->frames0, le64(s->prefix + 8 + 8 * (size_t)i));
	if (s->track) {
		const unsigned char *data = s->body + 8 + 8 * (size_t)count;
		size_t ps = s->hdr.page_size;

		for (uint32_t i = 0; i < count; i++)
			memcpy(track_stage(s, le64(s->body + 8 + 8 * (size_t)i)), data + i * ps, ps);
	}
	s->epoch_pages += count;
	s->pages_total += count;
	return true;
}

static bool on_device_state(struct stream *s, struct verdict *v)
{
	if (!require_open_epoch(s, v))
		return false;
	if (s->device_state_seen)
		return reject(v, "O6", s->rec_offset,
			      "second DEVICE_STATE in epoch %" PRIu64
			      " (the first is at offset %" PRIu64 "); exactly one per epoch",
			      s->epoch, s->device_state_offset);
	s->device_state_seen = true;
	s->device_state_offset = s->rec_offset;
	return true;
}

static bool check_epoch_zero_complete(const struct stream *s, struct verdict *v)
{
	if (s->frames0.covered == s->hdr.frame_count)
		return true;
	return reject(v, "O7", s->rec_offset,
		      "EPOCH_COMMIT(0) but epoch 0 carried %" PRIu64 " of %" PRIu64
		      " frames (first missing pfn %" PRIu64 "); epoch 0 must carry every frame",
		      s->frames0.covered, s->hdr.frame_count,
		      coverage_first_missing(&s->frames0, s->hdr.frame_count));
}

static bool on_epoch_commit(struct stream *s, struct verdict *v)
{
	uint64_t epoch, pages;

	if (!check_exact_length(s, 16, v) || !require_open_epoch(s, v))
		return false;
	epoch = le64(s->prefix);
	pages = le64(s->prefix + 8);
	if (epoch != s->epoch)
		return reject(v, "O4", body_offset(s, 0),
			      "EPOCH_COMMIT epoch %" PRIu64 " but the open epoch is %" PRIu64,
			      epoch, s->epoch);
	if (pages != s->epoch_pages)
		return reject(v, "O5", body_offset(s, 8),
			      "EPOCH_COMMIT(%" PRIu64 ") pages %" PRIu64 " but the epoch's"
			      " PAGE_DATA, PAGE_DELTA and SPEC_APPLY records carried %" PRIu64 " pfn entries",
			      epoch, pages, s->epoch_pages);
	if (!s->device_state_seen)
		return reject(v, "O6", s->rec_offset,
			      "EPOCH_COMMIT(%" PRIu64 ") with no DEVICE_STATE in the epoch",
			      epoch);
	if (epoch == 0 && !check_epoch_zero_complete(s, v))
		return false;
	if (epoch == 0)
		coverage_free(&s->frames0);
	if (s->track) {
		track_commit(s);
		spec_drop(s); /* staged copies the epoch did not name */
	}
	s->epoch_open = false;
	s->committed_any = true;
	s->last_committed = epoch;
	s->epochs_committed++;
	return true;
}

/* ---- page delta encodings (PAGE_DELTA, D3) --------------------------------------- */

/* Checks one encoding as the spec's PAGE_DELTA section defines it; when
 * `page` is not NULL and the encoding is good, applies it there.  Returns
 * NULL, or what is wrong. */
static const char *delta_decode(const unsigned char *e, size_t n, unsigned char *page,
				char *why, size_t why_size)
{
	switch (e[0]) {
	case 0x01: /* SAME */
		if (n != 1)
			return "SAME encoding longer than 1 byte";
		return NULL;
	case 0x02: /* WHOLE */
		if (n != 1 + DELTA_PAGE_SIZE)
			return "WHOLE encoding is not 4097 bytes";
		if (page)
			memcpy(page, e + 1, DELTA_PAGE_SIZE);
		return NULL;
	case 0x03: { /* BLOCKS */
		unsigned shift;
		size_t block, blocks, mask_bytes, present = 0, want;

		if (n < 2)
			return "BLOCKS encoding ends before its block shift";
		shift = e[1];
		if (shift < 6 || shift > 8) {
			snprintf(why, why_size, "BLOCKS block shift %u is not 6, 7 or 8", shift);
			return why;
		}
		block = (size_t)1 << shift;
		blocks = DELTA_PAGE_SIZE / block;
		mask_bytes = blocks / 8;
		if (n < 2 + mask_bytes)
			return "BLOCKS encoding ends inside its mask";
		for (size_t i = 0; i < blocks; i++)
			present += (e[2 + i / 8] >> (i % 8)) & 1u;
		want = 2 + mask_bytes + present * block;
		if (n != want) {
			snprintf(why, why_size,
				 "BLOCKS encoding is %zu bytes, its mask (%zu blocks of %zu) needs %zu",
				 n, present, block, want);
			return why;
		}
		if (page) {
			const unsigned char *src = e + 2 + mask_bytes;

			for (size_t i = 0; i < blocks; i++)
				if ((e[2 + i / 8] >> (i % 8)) & 1u) {
					memcpy(page + i * block, src, block);
					src += block;
				}
		}
		return NULL;
	}
	case 0x04: { /* RUNS */
		size_t count, pos = 3, end = 0;

		if (n < 3)
			return "RUNS encoding ends inside its count";
		count = (size_t)e[1] | (size_t)e[2] << 8;
		if (count > 2048) {
			snprintf(why, why_size, "RUNS count %zu is above 2048", count);
			return why;
		}
		for (size_t i = 0; i < count; i++) {
			size_t off, len;

			if (n - pos < 4)
				return "RUNS encoding ends inside a run header";
			off = (size_t)e[pos] | (size_t)e[pos + 1] << 8;
			len = (size_t)e[pos + 2] | (size_t)e[pos + 3] << 8;
			if (len == 0) {
				snprintf(why, why_size, "RUNS run %zu has length 0", i);
				return why;
			}
			if (off < end) {
				snprintf(why, why_size,
					 "RUNS run %zu at %zu overlaps or precedes the previous run (ends at %zu)",
					 i, off, end);
				return why;
			}
			if (off + len > DELTA_PAGE_SIZE) {
				snprintf(why, why_size, "RUNS run %zu [%zu, +%zu) ends past the page",
					 i, off, len);
				return why;
			}
			if (n - pos - 4 < len)
				return "RUNS encoding ends inside a run's bytes";
			pos += 4 + len;
			end = off + len;
		}
		if (pos != n)
			return "RUNS encoding has bytes after its last run";
		if (page) {
			pos = 3;
			for (size_t i = 0; i < count; i++) {
				size_t off = (size_t)e[pos] | (size_t)e[pos + 1] << 8;
				size_t len = (size_t)e[pos + 2] | (size_t)e[pos + 3] << 8;

				memcpy(page + off, e + pos + 4, len);
				pos += 4 + len;
			}
		}
		return NULL;
	}
	default:
		snprintf(why, why_size, "unknown encoding kind 0x%02x", e[0]);
		return why;
	}
}

static bool on_page_delta(struct stream *s, struct verdict *v)
{
	const unsigned char *b = s->body;
	uint32_t count, reserved;
	size_t pos = 8;
	char why[160];

	if (!require_open_epoch(s, v))
		return false;
	if (s->epoch == 0)
		return reject(v, "D1", s->rec_offset,
			      "PAGE_DELTA in epoch 0; the full synchronisation has no base");
	if (s->hdr.page_size != DELTA_PAGE_SIZE)
		return reject(v, "D2", s->rec_offset,
			      "PAGE_DELTA in a stream of page_size %" PRIu32 "; deltas need 4096",
			      s->hdr.page_size);
	if (s->length < 8)
		return reject(v, "R7", s->rec_offset,
			      "PAGE_DELTA body is %" PRIu32 " bytes, shorter than its count"
			      " and reserved fields", s->length);
	count = le32(b);
	reserved = le32(b + 4);
	if (count == 0 || count > DELTA_COUNT_MAX)
		return reject(v, "R7", body_offset(s, 0),
			      "PAGE_DELTA count %" PRIu32 " is not in 1..%u", count, DELTA_COUNT_MAX);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 4),
			      "PAGE_DELTA reserved field 0x%08" PRIx32 " must be 0", reserved);
	/* Layout first: every entry inside the body, the body filled exactly. */
	for (uint32_t i = 0; i < count; i++) {
		size_t len;

		if (s->length - pos < DELTA_ENTRY_HEADER)
			return reject(v, "R7", body_offset(s, pos),
				      "PAGE_DELTA body ends inside the header of entry %" PRIu32, i);
		len = (size_t)b[pos + 16] | (size_t)b[pos + 17] << 8;
		if (len == 0 || len > DELTA_ENCODING_MAX)
			return reject(v, "R7", body_offset(s, pos + 16),
				      "PAGE_DELTA entry %" PRIu32 " length %zu is not in 1..%u",
				      i, len, DELTA_ENCODING_MAX);
		if (s->length - pos - DELTA_ENTRY_HEADER < len)
			return reject(v, "R7", body_offset(s, pos),
				      "PAGE_DELTA body ends inside the encoding of entry %" PRIu32, i);
		pos += DELTA_ENTRY_HEADER + len;
	}
	if (pos != s->length)
		return reject(v, "R7", body_offset(s, pos),
			      "PAGE_DELTA has %zu bytes after its last entry",
			      (size_t)(s->length - pos));
	pos = 8;
	for (uint32_t i = 0; i < count; i++) {
		uint64_t pfn = le64(b + pos), base = le64(b + pos + 8);
		size_t len = (size_t)b[pos + 16] | (size_t)b[pos + 17] << 8;
		const unsigned char *enc = b + pos + DELTA_ENTRY_HEADER;
		const char *bad;

		if (pfn >= s->hdr.frame_count)
			return reject(v, "O8", body_offset(s, pos),
				      "PAGE_DELTA entry %" PRIu32 " pfn %" PRIu64
				      " >= frame_count %" PRIu64 " (epoch %" PRIu64 ")",
				      i, pfn, s->hdr.frame_count, s->epoch);
		bad = delta_decode(enc, len, NULL, why, sizeof(why));
		if (bad)
			return reject(v, "D3", body_offset(s, pos + DELTA_ENTRY_HEADER),
				      "PAGE_DELTA entry %" PRIu32 " (pfn %" PRIu64 "): %s", i, pfn, bad);
		if (s->track) {
			uint64_t have = XXH3_64bits(track_current(s, pfn), DELTA_PAGE_SIZE);

			if (have != base)
				return reject(v, "D4", body_offset(s, pos + 8),
					      "PAGE_DELTA entry %" PRIu32 " (pfn %" PRIu64
					      ", epoch %" PRIu64 "): the backup's copy hashes to"
					      " 0x%016" PRIx64 ", the entry's base is 0x%016" PRIx64,
					      i, pfn, s->epoch, have, base);
			(void)delta_decode(enc, len, track_stage(s, pfn), why, sizeof(why));
		}
		pos += DELTA_ENTRY_HEADER + len;
	}
	s->epoch_pages += count;
	s->pages_total += count;
	s->delta_entries += count;
	return true;
}

/* ---- speculative transfer (S1, S2) ------------------------------------------------ */

static bool on_spec_page_data(struct stream *s, struct verdict *v)
{
	const unsigned char *b = s->body;
	uint64_t epoch, expected = s->committed_any ? s->last_committed + 1 : 0;
	uint32_t count, reserved;
	uint64_t count_max = PAGE_DATA_BYTES_MAX / s->hdr.page_size, want;
	size_t ps = s->hdr.page_size;

	if (s->length < 16)
		return reject(v, "R7", s->rec_offset,
			      "SPEC_PAGE_DATA body is %" PRIu32 " bytes, shorter than its 16"
			      " bytes of fixed fields", s->length);
	epoch = le64(b);
	count = le32(b + 8);
	reserved = le32(b + 12);
	if (count == 0 || count > count_max)
		return reject(v, "R7", body_offset(s, 8),
			      "SPEC_PAGE_DATA count %" PRIu32 " is not in 1..%" PRIu64, count, count_max);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 12),
			      "SPEC_PAGE_DATA reserved field 0x%08" PRIx32 " must be 0", reserved);
	want = 16 + (uint64_t)count * (8 + (uint64_t)ps);
	if (s->length != want)
		return reject(v, "R7", s->rec_offset,
			      "SPEC_PAGE_DATA body is %" PRIu32 " bytes, count %" PRIu32
			      " needs exactly %" PRIu64, s->length, count, want);
	if (s->epoch_open)
		return reject(v, "S1", s->rec_offset,
			      "SPEC_PAGE_DATA inside open epoch %" PRIu64
			      "; speculative pages travel between epochs", s->epoch);
	if (epoch == 0 || epoch != expected)
		return reject(v, "S1", body_offset(s, 0),
			      "SPEC_PAGE_DATA for epoch %" PRIu64 ", the next epoch is %" PRIu64
			      " (and epoch 0 takes none)", epoch, expected);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t pfn = le64(b + 16 + 8 * (size_t)i);

		if (pfn >= s->hdr.frame_count)
			return reject(v, "O8", body_offset(s, 16 + 8 * (uint64_t)i),
				      "SPEC_PAGE_DATA pfn[%" PRIu32 "] %" PRIu64 " >= frame_count %" PRIu64,
				      i, pfn, s->hdr.frame_count);
	}
	if (s->track) {
		if (s->spec_epoch != epoch)
			spec_drop(s);
		s->spec_epoch = epoch;
		for (uint32_t i = 0; i < count; i++) {
			uint64_t pfn = le64(b + 16 + 8 * (size_t)i);

			if (!s->spec[pfn]) {
				s->spec[pfn] = xcalloc(ps, 1);
				s->spec_list[s->spec_count++] = pfn;
			}
			memcpy(s->spec[pfn], b + 16 + 8 * (size_t)count + i * ps, ps);
		}
	}
	return true;
}

static bool on_spec_apply(struct stream *s, struct verdict *v)
{
	const unsigned char *b = s->body;
	uint32_t count, reserved;

	if (!require_open_epoch(s, v))
		return false;
	if (s->length < 8)
		return reject(v, "R7", s->rec_offset,
			      "SPEC_APPLY body is %" PRIu32 " bytes, shorter than its count"
			      " and reserved fields", s->length);
	count = le32(b);
	reserved = le32(b + 4);
	if (count == 0 || count > SPEC_APPLY_COUNT_MAX)
		return reject(v, "R7", body_offset(s, 0),
			      "SPEC_APPLY count %" PRIu32 " is not in 1..%u", count, SPEC_APPLY_COUNT_MAX);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 4),
			      "SPEC_APPLY reserved field 0x%08" PRIx32 " must be 0", reserved);
	if (s->length != 8 + 8 * (uint64_t)count)
		return reject(v, "R7", s->rec_offset,
			      "SPEC_APPLY body is %" PRIu32 " bytes, count %" PRIu32 " needs exactly %" PRIu64,
			      s->length, count, 8 + 8 * (uint64_t)count);
	for (uint32_t i = 0; i < count; i++) {
		uint64_t pfn = le64(b + 8 + 8 * (size_t)i);

		if (pfn >= s->hdr.frame_count)
			return reject(v, "O8", body_offset(s, 8 + 8 * (uint64_t)i),
				      "SPEC_APPLY pfn[%" PRIu32 "] %" PRIu64 " >= frame_count %" PRIu64,
				      i, pfn, s->hdr.frame_count);
	}
	for (uint32_t i = 0; i < count && s->track; i++) {
		uint64_t pfn = le64(b + 8 + 8 * (size_t)i);

		if (s->spec_epoch != s->epoch || !s->spec[pfn])
			return reject(v, "S2", body_offset(s, 8 + 8 * (uint64_t)i),
				      "SPEC_APPLY names pfn %" PRIu64 ", which has no speculative copy"
				      " staged for epoch %" PRIu64, pfn, s->epoch);
		memcpy(track_stage(s, pfn), s->spec[pfn], s->hdr.page_size);
	}
	s->epoch_pages += count;
	s->pages_total += count;
	s->spec_applied += count;
	return true;
}

/* ---- COMPRESSED (C1-C5) ------------------------------------------------------------ */

/* Decompresses into s->inflated, exactly `want` bytes, or returns what is wrong. */
static const char *inflate_body(struct stream *s, unsigned codec, const unsigned char *in,
				size_t n, size_t want, char *why, size_t why_size)
{
	if (s->inflated_cap < want) {
		s->inflated = xrealloc(s->inflated, want);
		s->inflated_cap = want;
	}
	if (codec == CODEC_ZLIB) {
		z_stream z;
		int r;
		size_t produced, left;

		memset(&z, 0, sizeof(z));
		if (inflateInit(&z) != Z_OK)
			fatal("zlib: inflateInit failed");
		z.next_in = (unsigned char *)in;
		z.avail_in = (uInt)n;
		z.next_out = s->inflated;
		z.avail_out = (uInt)want;
		r = inflate(&z, Z_FINISH);
		produced = want - z.avail_out;
		left = z.avail_in;
		inflateEnd(&z);
		if (r == Z_STREAM_END) {
			if (produced != want) {
				snprintf(why, why_size, "zlib data decompresses to %zu bytes, the header says %zu",
					 produced, want);
				return why;
			}
			if (left != 0) {
				snprintf(why, why_size, "%zu bytes after the end of the zlib stream", left);
				return why;
			}
			return NULL;
		}
		if (produced == want && left > 0) {
			snprintf(why, why_size, "zlib data decompresses to more than the %zu bytes"
				 " the header says", want);
			return why;
		}
		snprintf(why, why_size, "zlib data does not decompress (inflate %d)", r);
		return why;
	}
	{
		size_t frame = ZSTD_findFrameCompressedSize(in, n), got;

		if (ZSTD_isError(frame)) {
			snprintf(why, why_size, "zstd: %s", ZSTD_getErrorName(frame));
			return why;
		}
		if (frame != n) {
			snprintf(why, why_size, "%zu bytes after the end of the zstd frame", n - frame);
			return why;
		}
		got = ZSTD_decompress(s->inflated, want, in, n);
		if (ZSTD_isError(got)) {
			snprintf(why, why_size, "zstd data does not decompress to at most %zu bytes: %s",
				 want, ZSTD_getErrorName(got));
			return why;
		}
		if (got != want) {
			snprintf(why, why_size, "zstd data decompresses to %zu bytes, the header says %zu",
				 got, want);
			return why;
		}
		return NULL;
	}
}

/* Checks the wrapper and replaces the current record by the one it wraps. */
static bool unwrap_compressed(struct stream *s, struct verdict *v)
{
	const unsigned char *b = s->body;
	uint32_t inner, inner_length;
	uint64_t inner_checksum, computed, max;
	unsigned codec;
	const struct type_info *info;
	const char *bad;
	char why[200];

	if (s->length <= COMPRESSED_HEADER)
		return reject(v, "R7", s->rec_offset,
			      "COMPRESSED body is %" PRIu32 " bytes; its header is 24 and"
			      " at least one byte of data must follow", s->length);
	for (unsigned i = 17; i < COMPRESSED_HEADER; i++)
		if (b[i] != 0)
			return reject(v, "R7", body_offset(s, i),
				      "COMPRESSED reserved byte %u is 0x%02x, must be 0", i, b[i]);
	inner = le32(b);
	inner_length = le32(b + 4);
	inner_checksum = le64(b + 8);
	codec = b[16];
	if (codec != CODEC_ZLIB && codec != CODEC_ZSTD)
		return reject(v, "C1", body_offset(s, 16),
			      "COMPRESSED codec %u is not 1 (zlib) or 2 (zstd)", codec);
	if (inner != T_PAGE_DATA && inner != T_PAGE_DELTA && inner != T_DEVICE_STATE &&
	    inner != T_SPEC_PAGE_DATA)
		return reject(v, "C2", body_offset(s, 0),
			      "COMPRESSED wraps type 0x%08" PRIx32 "; only PAGE_DATA,"
			      " PAGE_DELTA, SPEC_PAGE_DATA or DEVICE_STATE may be compressed", inner);
	info = find_type(inner);
	max = type_max_length(inner, s->hdr.page_size);
	if (inner_length == 0 || inner_length > max)
		return reject(v, "C3", body_offset(s, 4),
			      "COMPRESSED %s inner length %" PRIu32 " is not in 1..%" PRIu64,
			      info->name, inner_length, max);
	bad = inflate_body(s, codec, b + COMPRESSED_HEADER, s->length - COMPRESSED_HEADER,
			   inner_length, why, sizeof(why));
	if (bad)
		return reject(v, "C4", body_offset(s, COMPRESSED_HEADER), "COMPRESSED %s: %s",
			      info->name, bad);
	computed = XXH3_64bits_withSeed(s->inflated, inner_length,
					(uint64_t)inner | (uint64_t)inner_length << 32);
	if (computed != inner_checksum)
		return reject(v, "C5", body_offset(s, 8),
			      "COMPRESSED %s: checksum 0x%016" PRIx64 " does not match the"
			      " decompressed body (computed 0x%016" PRIx64 ")",
			      info->name, inner_checksum, computed);
	s->compressed_records++;
	s->info = info;
	s->type = inner;
	s->length = inner_length;
	s->body = s->inflated;
	s->unwrapped = true;
	s->prefix_len = inner_length < PREFIX_MAX ? inner_length : PREFIX_MAX;
	memcpy(s->prefix, s->inflated, s->prefix_len);
	return true;
}

/* ---- records of both directions ---------------------------------------------- */

static bool on_heartbeat(struct stream *s, struct verdict *v)
{
	uint64_t sequence;

	if (!check_exact_length(s, 16, v))
		return false;
	sequence = le64(s->prefix);
	if (s->heartbeat_seen && sequence != s->heartbeat_sequence + 1)
		warn(s, "HEARTBEAT at offset %" PRIu64 ": sequence %" PRIu64
			", expected %" PRIu64 " (previous + 1)",
		     s->rec_offset, sequence, s->heartbeat_sequence + 1);
	s->heartbeat_seen = true;
	s->heartbeat_sequence = sequence;
	s->heartbeats++;
	return true;
}

static bool on_end(struct stream *s, struct verdict *v)
{
	if (!check_exact_length(s, 0, v))
		return false;
	if (s->epoch_open)
		return reject(v, "O9", s->rec_offset,
			      "END inside open epoch %" PRIu64 " (begun at offset %" PRIu64
			      "); END is allowed only between epochs",
			      s->epoch, s->epoch_offset);
	s->ended = true;
	s->end_offset = s->rec_offset;
	return true;
}

/* ---- back-channel records (B1) ----------------------------------------------- */

static bool on_ack(struct stream *s, struct verdict *v)
{
	uint64_t epoch;

	if (!check_exact_length(s, 8, v))
		return false;
	epoch = le64(s->prefix);
	if (s->acked_any && epoch <= s->last_ack)
		return reject(v, "B1", body_offset(s, 0),
			      "ACK epoch %" PRIu64 " is not above the previous ACK %" PRIu64
			      " (offset %" PRIu64 ")",
			      epoch, s->last_ack, s->last_ack_offset);
	if (s->forward_known && !s->forward_committed_any)
		return reject(v, "B1", body_offset(s, 0),
			      "ACK epoch %" PRIu64
			      " but the forward stream committed no epoch",
			      epoch);
	if (s->forward_known && epoch > s->forward_last_committed)
		return reject(v, "B1", body_offset(s, 0),
			      "ACK epoch %" PRIu64 " is above the newest epoch the"
			      " forward stream committed (%" PRIu64 ")",
			      epoch, s->forward_last_committed);
	s->acked_any = true;
	s->last_ack = epoch;
	s->last_ack_offset = s->rec_offset;
	s->acks++;
	return true;
}

/* Offset of the first byte that is not well-formed UTF-8, or n. */
static size_t utf8_invalid_at(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		unsigned char lo = 0x80, hi = 0xbf;
		size_t extra;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			extra = 1;
		else if (c >= 0xe0 && c <= 0xef)
			extra = 2;
		else if (c >= 0xf0 && c <= 0xf4)
			extra = 3;
		else
			return i;
		if (c == 0xe0)
			lo = 0xa0; /* no overlong forms */
		else if (c == 0xed)
			hi = 0x9f; /* no surrogates */
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f; /* nothing above U+10FFFF */
		if (extra >= n - i)
			return i; /* sequence cut by the end of the message */
		if (p[i + 1] < lo || p[i + 1] > hi)
			return i;
		for (size_t k = 2; k <= extra; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return i;
		i += extra + 1;
	}
	return n;
}

static bool on_nack(struct stream *s, struct verdict *v)
{
	uint64_t epoch;
	uint32_t reason, reserved;
	const unsigned char *message = s->prefix + NACK_FIXED;
	size_t length, bad;

	if (s->length < NACK_FIXED)
		return reject(v, "R7", s->rec_offset,
			      "NACK body is %" PRIu32 " bytes, its layout needs at least %u",
			      s->length, NACK_FIXED);
	epoch = le64(s->prefix);
	reason = le32(s->prefix + 8);
	reserved = le32(s->prefix + 12);
	length = s->length - NACK_FIXED;
	if (reason < 1 || reason > NACK_REASON_MAX)
		return reject(v, "R7", body_offset(s, 8),
			      "NACK reason %" PRIu32 " is not one of 1..%u", reason,
			      NACK_REASON_MAX);
	if (reserved != 0)
		return reject(v, "R7", body_offset(s, 12),
			      "NACK reserved field 0x%08" PRIx32 " must be 0", reserved);
	for (size_t i = 0; i < length; i++)
		if (message[i] == 0)
			return reject(v, "R7", body_offset(s, NACK_FIXED + i),
				      "NACK message contains a NUL byte at index %zu", i);
	bad = utf8_invalid_at(message, length);
	if (bad < length)
		return reject(v, "R7", body_offset(s, NACK_FIXED + bad),
			      "NACK message is not UTF-8 (byte 0x%02x at index %zu)",
			      message[bad], bad);
	(void)epoch; /* any epoch, or 2^64-1 when none was open */
	s->nacks++;
	return true;
}

/* ---- record loop --------------------------------------------------------------- */

static bool dispatch(struct stream *s, struct verdict *v)
{
	if (!s->info)
		return true; /* unknown optional type: checked, then ignored */
	switch (s->info->type) {
	case T_EPOCH_BEGIN:
		return on_epoch_begin(s, v);
	case T_PAGE_DATA:
		return on_page_data(s, v);
	case T_PAGE_DELTA:
		return on_page_delta(s, v);
	case T_SPEC_PAGE_DATA:
		return on_spec_page_data(s, v);
	case T_SPEC_APPLY:
		return on_spec_apply(s, v);
	case T_COMPRESSED:
		/* The wrapped record stands where the wrapper stood. */
		if (!unwrap_compressed(s, v))
			return false;
		return dispatch(s, v);
	case T_DEVICE_STATE:
		return on_device_state(s, v);
	case T_EPOCH_COMMIT:
		return on_epoch_commit(s, v);
	case T_HEARTBEAT:
		return on_heartbeat(s, v);
	case T_END:
		return on_end(s, v);
	case T_ACK:
		return on_ack(s, v);
	case T_NACK:
		return on_nack(s, v);
	default:
		return true;
	}
}

enum step { STEP_MORE, STEP_EOF, STEP_STOP };

/* One record: framing rules first (type, length, body, checksum, padding),
 * then its layout, then the ordering rules. */
static enum step read_record(struct stream *s, struct verdict *v)
{
	unsigned char rh[RECORD_HEADER_SIZE];
	size_t got;

	s->rec_offset = s->in.offset;
	got = input_read(&s->in, rh, RECORD_HEADER_SIZE);
	if (got == 0)
		return STEP_EOF;
	if (s->ended) {
		reject(v, "O9", s->rec_offset,
		       "data after END (END at offset %" PRIu64 "); nothing may follow END",
		       s->end_offset);
		return STEP_STOP;
	}
	s->info = NULL;
	s->type = got >= 4 ? le32(rh) : 0;
	s->length = got >= 8 ? le32(rh + 4) : 0;
	if (got < RECORD_HEADER_SIZE) {
		reject(v, "R6", s->rec_offset,
		       "record header truncated: stream ends at offset %" PRIu64
		       " after %zu of %u bytes",
		       s->in.offset, got, RECORD_HEADER_SIZE);
		return STEP_STOP;
	}
	s->checksum = le64(rh + 8);
	if (check_type(s, v) && check_max_length(s, v) && read_body(s, v) &&
	    read_padding(s, v) && dispatch(s, v))
		return STEP_MORE;
	return STEP_STOP;
}

/* The stream ended at a record boundary: END, or O10. */
static void finish(struct stream *s, struct verdict *v)
{
	uint64_t at = s->in.offset;

	if (s->ended)
		return;
	if (s->back) {
		if (!s->allow_no_end)
			incomplete(v, at, "back channel ends without END (the backup is gone)");
		return;
	}
	if (s->epoch_open) {
		incomplete(v, at,
			   "stream ends inside epoch %" PRIu64 " (begun at offset %" PRIu64
			   ", %" PRIu64 " pfn entries, no EPOCH_COMMIT); the backup"
			   " discards it and keeps %s",
			   s->epoch, s->epoch_offset, s->epoch_pages,
			   s->committed_any ? "its last complete epoch" : "no replica");
		return;
	}
	if (s->allow_no_end && s->committed_any)
		return;
	if (s->committed_any)
		incomplete(v, at,
			   "stream ends after committed epoch %" PRIu64
			   " without END (the primary is gone)",
			   s->last_committed);
	else
		incomplete(v, at,
			   "stream ends without END and without any committed epoch"
			   " (the primary is gone)");
}

static void stream_init(struct stream *s, const char *path, bool back,
			bool quiet, bool allow_no_end)
{
	memset(s, 0, sizeof(*s));
	input_open(&s->in, path);
	s->back = back;
	s->quiet = quiet;
	s->allow_no_end = allow_no_end;
	s->hash = XXH3_createState();
	if (!s->hash)
		fatal("out of memory");
}

static void stream_fini(struct stream *s)
{
	coverage_free(&s->frames0);
	track_free(s);
	XXH3_freeState(s->hash);
	input_close(&s->in);
}

/* Leaves the first violation, O10, or OK in *v. */
static void verify(struct stream *s, struct verdict *v)
{
	enum step step;

	memset(v, 0, sizeof(*v));
	v->outcome = OUTCOME_OK;
	s->header_ok = read_header(s, v);
	if (!s->header_ok)
		return;
	do
		step = read_record(s, v);
	while (step == STEP_MORE);
	if (step == STEP_EOF)
		finish(s, v);
}

/* ---- output ------------------------------------------------------------------- */

static void print_last(char *buf, size_t size, bool any, uint64_t value)
{
	if (any)
		snprintf(buf, size, "%" PRIu64, value);
	else
		snprintf(buf, size, "none");
}

static void print_ok(const struct stream *s)
{
	char last[32];

	if (!s->back) {
		print_last(last, sizeof(last), s->committed_any, s->last_committed);
		printf("OK: forward stream, session 0x%016" PRIx64 ", page_size %" PRIu32
		       ", frames %" PRIu64 ", epochs %" PRIu64
		       " (last committed %s), pages %" PRIu64 " (deltas %" PRIu64 ", speculative %" PRIu64 ", bases %s),"
		       " compressed records %" PRIu64 ", bytes %" PRIu64 "\n",
		       s->hdr.session, s->hdr.page_size, s->hdr.frame_count,
		       s->epochs_committed, last, s->pages_total, s->delta_entries, s->spec_applied,
		       s->track ? "checked" : "not checked: guest above 256 MiB",
		       s->compressed_records, s->in.offset);
		return;
	}
	print_last(last, sizeof(last), s->acked_any, s->last_ack);
	printf("OK: back channel, session 0x%016" PRIx64 ", page_size %" PRIu32
	       ", frames %" PRIu64 ", acks %" PRIu64 " (last acked %s), nacks %" PRIu64
	       ", heartbeats %" PRIu64 ", bytes %" PRIu64 "\n",
	       s->hdr.session, s->hdr.page_size, s->hdr.frame_count, s->acks, last,
	       s->nacks, s->heartbeats, s->in.offset);
}

static int report(const struct stream *s, const struct verdict *v)
{
	switch (v->outcome) {
	case OUTCOME_OK:
		if (!s->quiet)
			print_ok(s);
		return EXIT_OK;
	case OUTCOME_INCOMPLETE:
		printf("INCOMPLETE O10 at offset %" PRIu64 ": %s\n", v->offset,
		       v->message);
		return EXIT_INCOMPLETE;
	case OUTCOME_REJECT:
		break;
	}
	printf("REJECT %s at offset %" PRIu64 ": %s\n", v->rule, v->offset,
	       v->message);
	return EXIT_REJECT;
}

/* ---- the forward stream a back channel answers ------------------------------- */

/* Reads the forward stream for its header (H8) and the newest epoch it
 * committed (B1).  A forward stream that is incomplete is normal (the
 * primary died); one rejected after its header still committed the epochs
 * before the violation, and those are what the backup may have acked. */
static void load_forward(struct stream *back, const char *path)
{
	static struct stream fwd;
	struct verdict v;

	stream_init(&fwd, path, false, back->quiet, false);
	verify(&fwd, &v);
	if (!fwd.header_ok)
		fatal("forward stream %s has no usable header: REJECT %s at offset %" PRIu64
		      ": %s",
		      path, v.rule, v.offset, v.message);
	if (v.outcome == OUTCOME_REJECT && !back->quiet)
		fprintf(stderr,
			PROG ": note: forward stream %s is itself rejected (REJECT %s at"
			     " offset %" PRIu64 "); using the epochs it committed before that\n",
			path, v.rule, v.offset);
	back->forward_known = true;
	back->forward_hdr = fwd.hdr;
	back->forward_committed_any = fwd.committed_any;
	back->forward_last_committed = fwd.last_committed;
	stream_fini(&fwd);
}

/* ---- command line ------------------------------------------------------------- */

struct options {
	bool quiet;
	bool back;
	bool allow_no_end;
	const char *forward;
	const char *file;
};

static void usage(FILE *out)
{
	fputs("usage: " PROG " [-q] [--allow-no-end] FILE\n"
	      "       " PROG " [-q] [--allow-no-end] --back-channel [--forward FWD] FILE\n"
	      "Verifies an ftsync replication stream (format version 1); FILE may be -.\n"
	      "  -q              print nothing on success\n"
	      "  --allow-no-end  accept a stream that ends right after a committed epoch\n"
	      "                  (back channel: that ends without END)\n"
	      "  --back-channel  FILE is a back channel (backup -> primary)\n"
	      "  --forward FWD   the forward stream it answers (header match, ACK bound)\n"
	      "Exit: 0 OK, 1 REJECT <rule>, 2 INCOMPLETE O10, 3 usage or I/O error.\n",
	      out);
}

_Noreturn static void usage_error(const char *what, const char *arg)
{
	fprintf(stderr, PROG ": %s%s", what, arg);
	fputs("\n(" PROG " --help for usage)\n", stderr);
	exit(EXIT_USAGE);
}

static void parse_args(int argc, char **argv, struct options *o)
{
	bool options_done = false;

	memset(o, 0, sizeof(*o));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!options_done && a[0] == '-' && a[1] != '\0') {
			if (strcmp(a, "--") == 0)
				options_done = true;
			else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0)
				o->quiet = true;
			else if (strcmp(a, "--back-channel") == 0)
				o->back = true;
			else if (strcmp(a, "--allow-no-end") == 0)
				o->allow_no_end = true;
			else if (strcmp(a, "--forward") == 0) {
				if (++i >= argc)
					usage_error("this option needs a file: ", a);
				o->forward = argv[i];
			} else if (strncmp(a, "--forward=", 10) == 0)
				o->forward = a + 10;
			else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
				usage(stdout);
				exit(EXIT_OK);
			} else
				usage_error("unknown option ", a);
			continue;
		}
		if (o->file)
			usage_error("more than one FILE: ", a);
		o->file = a;
	}
	if (!o->file)
		usage_error("no FILE given", "");
	if (o->forward && !o->back)
		usage_error("--forward is only meaningful with --back-channel", "");
	if (o->forward && *o->forward == '\0')
		usage_error("--forward needs a file", "");
	if (o->forward && strcmp(o->forward, "-") == 0 && strcmp(o->file, "-") == 0)
		usage_error("FILE and --forward cannot both be standard input", "");
}

int main(int argc, char **argv)
{
	static struct stream s;
	struct options o;
	struct verdict v;
	int status;

	parse_args(argc, argv, &o);
	stream_init(&s, o.file, o.back, o.quiet, o.allow_no_end);
	if (o.forward)
		load_forward(&s, o.forward);
	else if (o.back && !o.quiet)
		fprintf(stderr, PROG ": note: no --forward stream: the header match (H8)"
				     " and the ACK upper bound (B1) are not checked\n");
	verify(&s, &v);
	status = report(&s, &v);
	stream_fini(&s);
	if (fflush(stdout) != 0)
		fatal("cannot write to standard output");
	return status;
}
