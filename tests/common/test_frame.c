/*
 * Tests for common/frame.c: codec round trips, strict decoding, a fuzz of
 * the decoder and of frame_conn, blocking fd I/O, and frame_conn over a
 * socketpair driven by a real event_base (no sleeps: loops with deadlines).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/frame.h"
#include "tests/common/evtest.h"
#include "common/xalloc.h"

#define NROWS(a)	 (sizeof(a) / sizeof((a)[0]))
#define LOOP_DEADLINE_MS 10000
#define FUZZ_ITERATIONS	 5000

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void make_pair(int sv[2])
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		fail_msg("socketpair: %s", strerror(errno));
}

static void write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	ssize_t r;

	while (n > 0) {
		r = write(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			fail_msg("write: %s", strerror(errno));
		p += r;
		n -= (size_t)r;
	}
}

static void assert_reason(const char *what, const char *got, const char *want)
{
	if (want[0] == '\0' && got[0] != '\0')
		fail_msg("%s: got reason \"%s\", want \"\"", what, got);
	if (strstr(got, want) == NULL)
		fail_msg("%s: got reason \"%s\", want one containing \"%s\"", what, got, want);
}

static void ping_frame(Zfarm__Frame *f, Zfarm__Ping *p, uint64_t id, const char *text)
{
	frame_init(f, id);
	zfarm__ping__init(p);
	p->text = (char *)text;
	f->body_case = ZFARM__FRAME__BODY_PING;
	f->ping = p;
}

static uint8_t *pack_ping(uint64_t id, const char *text, size_t *len)
{
	Zfarm__Frame f;
	Zfarm__Ping p;
	uint8_t *buf;
	char err[128];

	ping_frame(&f, &p, id, text);
	if (frame_pack(&f, FRAME_MAX_LIMIT, &buf, len, err, sizeof(err)) < 0)
		fail_msg("frame_pack ping: %s", err);
	return buf;
}

/* frame_problem - why a decoded frame is not acceptable, or NULL. */
static const char *frame_problem(const Zfarm__Frame *f)
{
	const char *name = frame_body_name(f);
	uint8_t *buf;
	size_t len;
	char err[128];
	Zfarm__Frame *again;

	if (f->version != FRAME_VERSION)
		return "wrong version";
	if (f->body_case == ZFARM__FRAME__BODY__NOT_SET)
		return "no body";
	if (strcmp(name, "unknown") == 0 || strcmp(name, "none") == 0)
		return "unnamed body";
	if (frame_pack(f, FRAME_MAX_LIMIT, &buf, &len, err, sizeof(err)) < 0)
		return "does not re-encode";
	again = frame_decode_exact(buf, len, FRAME_MAX_LIMIT, err, sizeof(err));
	free(buf);
	if (again == NULL)
		return "re-encoding does not decode";
	frame_free(&again);
	return NULL;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	bool *hit = arg;

	(void)fd;
	(void)what;
	*hit = true;
}

/*
 * run_loop - dispatch until a callback breaks the loop; false on the
 * deadline.  Its own timer, not event_base_loopexit(), whose one-shot
 * event would outlive an early break and cut a later run short.
 */
static bool run_loop(struct event_base *base, unsigned ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
	bool hit = false;
	struct event *t = evtimer_new(base, on_deadline, &hit);

	evtimer_add(t, &tv);
	while (!hit && event_base_loop(base, EVLOOP_ONCE) == 0 && !event_base_got_break(base))
		;
	event_free(t);
	return !hit;
}

/* ---- a receiving end for frame_conn tests ---- */

struct rx {
	struct event_base *base;
	struct frame_conn *conn;
	unsigned nframes;
	uint64_t last_id;
	unsigned nclose;
	char reason[256];
	unsigned bad;
	char bad_msg[256];
	/* behaviour */
	bool any_ids;	   /* request ids need not run 1, 2, 3... */
	unsigned want;	   /* break the loop at this many frames */
	unsigned free_at;  /* frame_conn_free() on this frame */
	unsigned pause_at; /* frame_conn_pause() on this frame */
	unsigned flush_at; /* reply, then close_after_flush on this frame */
	size_t text_len;   /* if set, pings carry this text pattern */
};

static void rx_bad(struct rx *rx, const char *msg)
{
	if (rx->bad++ == 0)
		snprintf(rx->bad_msg, sizeof(rx->bad_msg), "frame %u: %s", rx->nframes, msg);
}

static const char *rx_check_text(const struct rx *rx, const Zfarm__Frame *f)
{
	size_t want = rx->text_len + f->request_id % 7;
	char c = (char)('a' + f->request_id % 26);

	if (strlen(f->ping->text) != want)
		return "text length";
	for (size_t i = 0; i < want; i++)
		if (f->ping->text[i] != c)
			return "text content";
	return NULL;
}

static void rx_check(struct rx *rx, const Zfarm__Frame *f)
{
	const char *problem = frame_problem(f);

	if (problem) {
		rx_bad(rx, problem);
		return;
	}
	if (f->body_case != ZFARM__FRAME__BODY_PING)
		return;
	if (!rx->any_ids && f->request_id != rx->last_id + 1)
		rx_bad(rx, "request ids out of order");
	rx->last_id = f->request_id;
	if (rx->text_len && (problem = rx_check_text(rx, f)) != NULL)
		rx_bad(rx, problem);
}

static void rx_flush(struct rx *rx, uint64_t id)
{
	Zfarm__Frame f;
	Zfarm__Ping p;
	char err[128];

	ping_frame(&f, &p, id, "bye");
	f.body_case = ZFARM__FRAME__BODY_PONG;
	f.pong = &p;
	if (frame_conn_send(rx->conn, &f, err, sizeof(err)) < 0)
		rx_bad(rx, err);
	frame_conn_close_after_flush(rx->conn);
	if (frame_conn_send(rx->conn, &f, err, sizeof(err)) == 0)
		rx_bad(rx, "send accepted after close_after_flush");
}

static void rx_on_recv(struct frame_conn *conn, Zfarm__Frame *f, void *arg)
{
	struct rx *rx = arg;

	if (conn != rx->conn)
		rx_bad(rx, "callback for another connection");
	rx->nframes++;
	rx_check(rx, f);
	if (rx->flush_at == rx->nframes)
		rx_flush(rx, f->request_id);
	frame_free(&f);
	if (rx->free_at == rx->nframes)
		frame_conn_free(&rx->conn);
	if (rx->pause_at == rx->nframes)
		frame_conn_pause(rx->conn);
	if (rx->free_at == rx->nframes || rx->pause_at == rx->nframes || rx->want == rx->nframes)
		event_base_loopbreak(rx->base);
}

static void rx_on_close(struct frame_conn *conn, const char *reason, void *arg)
{
	struct rx *rx = arg;

	if (conn != rx->conn)
		rx_bad(rx, "close for another connection");
	rx->nclose++;
	snprintf(rx->reason, sizeof(rx->reason), "%s", reason);
	frame_conn_free(&rx->conn);
	event_base_loopbreak(rx->base);
}

static void rx_open(struct rx *rx, struct event_base *base, int fd, size_t max)
{
	rx->base = base;
	rx->conn = frame_conn_new(base, fd, max, rx_on_recv, rx_on_close, rx);
	assert_non_null(rx->conn);
}

/* rx_until_closed - run the loop until the close callback; fails on the deadline. */
static void rx_until_closed(struct rx *rx, const char *what)
{
	while (rx->nclose == 0)
		if (!run_loop(rx->base, LOOP_DEADLINE_MS))
			fail_msg("%s: got no close after %d ms (%u frames), want one", what,
				 LOOP_DEADLINE_MS, rx->nframes);
}

static void rx_assert_good(const struct rx *rx, const char *what)
{
	if (rx->bad)
		fail_msg("%s: got %u bad frame(s), first %s; want none", what, rx->bad,
			 rx->bad_msg);
}

/* ---- codec ---- */

struct bodies {
	Zfarm__Ping ping;
	Zfarm__FarmStatus status;
	Zfarm__FarmWakeup wakeup;
	Zfarm__QueueRef ref;
	Zfarm__DeliveryRequest dr;
	Zfarm__DeliveryRecipient rcpt[2];
	Zfarm__DeliveryRecipient *rcptv[2];
	Zfarm__QueueControlReply qr;
	Zfarm__QueueEntry ent[2];
	Zfarm__QueueEntry *entv[2];
	Zfarm__RecipientState rs[2];
	Zfarm__RecipientState *rsv[2];
	Zfarm__QueueCounter ctr;
	Zfarm__QueueCounter *ctrv[1];
};

static void build_ping(Zfarm__Frame *f, struct bodies *b)
{
	ping_frame(f, &b->ping, 7, "hello");
}

static void check_ping(const Zfarm__Frame *f)
{
	assert_int_equal(f->request_id, 7);
	assert_string_equal(f->ping->text, "hello");
}

static void build_farm_status(Zfarm__Frame *f, struct bodies *b)
{
	frame_init(f, 0);
	zfarm__farm_status__init(&b->status);
	b->status.pid = 4242;
	b->status.generation = UINT64_C(1) << 40;
	b->status.state = ZFARM__FARM_STATUS__STATE__TAKEN;
	b->status.sessions = 3;
	b->status.served = 1000000;
	b->status.busy = 1;
	f->body_case = ZFARM__FRAME__BODY_FARM_STATUS;
	f->farm_status = &b->status;
}

static void check_farm_status(const Zfarm__Frame *f)
{
	const Zfarm__FarmStatus *st = f->farm_status;

	assert_int_equal(st->pid, 4242);
	assert_int_equal(st->generation, UINT64_C(1) << 40);
	assert_int_equal(st->state, ZFARM__FARM_STATUS__STATE__TAKEN);
	assert_int_equal(st->sessions, 3);
	assert_int_equal(st->served, 1000000);
	assert_true(st->busy);
}

static void build_wakeup(Zfarm__Frame *f, struct bodies *b)
{
	frame_init(f, UINT64_MAX);
	zfarm__farm_wakeup__init(&b->wakeup);
	f->body_case = ZFARM__FRAME__BODY_FARM_WAKEUP;
	f->farm_wakeup = &b->wakeup;
}

static void check_wakeup(const Zfarm__Frame *f)
{
	assert_int_equal(f->request_id, UINT64_MAX);
	assert_non_null(f->farm_wakeup);
}

static void build_delivery(Zfarm__Frame *f, struct bodies *b)
{
	static const char *const addrs[2] = {"alice@example.org", "bob@example.org"};

	frame_init(f, 99);
	zfarm__queue_ref__init(&b->ref);
	b->ref.queue_id = "2F4K7Q1Z9V";
	b->ref.store = "spool";
	b->ref.size = 12345;
	b->ref.nrcpt = 2;
	b->ref.arrival = 1795000000;
	zfarm__delivery_request__init(&b->dr);
	b->dr.ref = &b->ref;
	b->dr.channel = "smtp";
	b->dr.nexthop = "example.org";
	b->dr.sender = "sender@example.net";
	b->dr.attempt = 3;
	for (int i = 0; i < 2; i++) {
		zfarm__delivery_recipient__init(&b->rcpt[i]);
		b->rcpt[i].index = (uint32_t)i;
		b->rcpt[i].address = (char *)addrs[i];
		b->rcpt[i].notify = ZFARM__NOTIFY__NOTIFY_FAILURE | ZFARM__NOTIFY__NOTIFY_DELAY;
		b->rcptv[i] = &b->rcpt[i];
	}
	b->dr.n_recipients = 2;
	b->dr.recipients = b->rcptv;
	f->body_case = ZFARM__FRAME__BODY_DELIVERY;
	f->delivery = &b->dr;
}

static void check_delivery(const Zfarm__Frame *f)
{
	const Zfarm__DeliveryRequest *dr = f->delivery;

	assert_int_equal(f->request_id, 99);
	assert_non_null(dr->ref);
	assert_string_equal(dr->ref->queue_id, "2F4K7Q1Z9V");
	assert_int_equal(dr->ref->size, 12345);
	assert_int_equal(dr->ref->arrival, 1795000000);
	assert_string_equal(dr->channel, "smtp");
	assert_string_equal(dr->sender, "sender@example.net");
	assert_int_equal(dr->attempt, 3);
	assert_int_equal(dr->n_recipients, 2);
	assert_string_equal(dr->recipients[0]->address, "alice@example.org");
	assert_string_equal(dr->recipients[1]->address, "bob@example.org");
	assert_int_equal(dr->recipients[1]->index, 1);
	assert_int_equal(dr->recipients[1]->notify, 12);
	assert_string_equal(dr->recipients[1]->orcpt, "");
}

static void build_qctl_reply(Zfarm__Frame *f, struct bodies *b)
{
	static const char *const ids[2] = {"2F4K7Q1Z9V", "3G5L8R2A0W"};

	frame_init(f, 5);
	zfarm__queue_control_reply__init(&b->qr);
	b->qr.ok = 1;
	b->qr.affected = 2;
	b->qr.truncated = 1;
	for (int i = 0; i < 2; i++) {
		zfarm__recipient_state__init(&b->rs[i]);
		b->rs[i].address = "rcpt@example.org";
		b->rs[i].status = "deferred";
		b->rs[i].attempts = (uint32_t)i + 1;
		b->rsv[i] = &b->rs[i];
		zfarm__queue_entry__init(&b->ent[i]);
		b->ent[i].queue_id = (char *)ids[i];
		b->ent[i].held = i == 1;
		b->ent[i].n_recipients = 1;
		b->ent[i].recipients = &b->rsv[i];
		b->entv[i] = &b->ent[i];
	}
	zfarm__queue_counter__init(&b->ctr);
	b->ctr.name = "delivered";
	b->ctr.value = UINT64_C(1) << 33;
	b->ctrv[0] = &b->ctr;
	b->qr.n_entries = 2;
	b->qr.entries = b->entv;
	b->qr.n_counters = 1;
	b->qr.counters = b->ctrv;
	f->body_case = ZFARM__FRAME__BODY_QUEUE_CONTROL_REPLY;
	f->queue_control_reply = &b->qr;
}

static void check_qctl_reply(const Zfarm__Frame *f)
{
	const Zfarm__QueueControlReply *qr = f->queue_control_reply;

	assert_true(qr->ok);
	assert_true(qr->truncated);
	assert_int_equal(qr->affected, 2);
	assert_int_equal(qr->n_entries, 2);
	assert_string_equal(qr->entries[1]->queue_id, "3G5L8R2A0W");
	assert_true(qr->entries[1]->held);
	assert_false(qr->entries[0]->held);
	assert_int_equal(qr->entries[1]->n_recipients, 1);
	assert_string_equal(qr->entries[1]->recipients[0]->status, "deferred");
	assert_int_equal(qr->entries[1]->recipients[0]->attempts, 2);
	assert_int_equal(qr->n_counters, 1);
	assert_int_equal(qr->counters[0]->value, UINT64_C(1) << 33);
}

static const struct codec_row {
	const char *name;
	void (*build)(Zfarm__Frame *f, struct bodies *b);
	void (*check)(const Zfarm__Frame *f);
} codec_rows[] = {
	{"ping", build_ping, check_ping},
	{"farm_status", build_farm_status, check_farm_status},
	{"farm_wakeup", build_wakeup, check_wakeup},
	{"delivery", build_delivery, check_delivery},
	{"queue_control_reply", build_qctl_reply, check_qctl_reply},
};

static void test_codec_roundtrip(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(codec_rows); i++) {
		const struct codec_row *row = &codec_rows[i];
		struct bodies b;
		Zfarm__Frame f, *got;
		uint8_t *buf;
		size_t len, want_len;
		char err[128];

		row->build(&f, &b);
		if (frame_pack(&f, 0, &buf, &len, err, sizeof(err)) < 0)
			fail_msg("%s: frame_pack: got error \"%s\", want success", row->name, err);
		want_len = FRAME_HEADER_SIZE + zfarm__frame__get_packed_size(&f);
		if (len != want_len)
			fail_msg("%s: got %zu bytes, want %zu", row->name, len, want_len);
		assert_int_equal(((size_t)buf[2] << 8 | buf[3]) + FRAME_HEADER_SIZE, len);
		got = frame_decode_exact(buf, len, 0, err, sizeof(err));
		free(buf);
		if (got == NULL)
			fail_msg("%s: decode: got error \"%s\", want a frame", row->name, err);
		if (strcmp(frame_body_name(got), row->name) != 0)
			fail_msg("%s: got body \"%s\", want \"%s\"", row->name,
				 frame_body_name(got), row->name);
		assert_int_equal(got->version, FRAME_VERSION);
		row->check(got);
		frame_free(&got);
		assert_null(got);
	}
	frame_free(NULL);
}

static const struct pack_row {
	const char *name;
	uint32_t version;
	bool body;
	size_t textlen;
	size_t max;
	size_t want_len; /* 0: an error containing want */
	const char *want;
} pack_rows[] = {
	/* version 08 01, request id 10 01, ping 52 LL, text 0a LL: 8 + text */
	{"fits exactly", FRAME_VERSION, true, 42, 50, 4 + 50, NULL},
	{"one over max", FRAME_VERSION, true, 43, 50, 0, "too large: 51 bytes, max 50"},
	{"over default max", FRAME_VERSION, true, FRAME_MAX_DEFAULT, 0, 0, "too large"},
	{"no body", FRAME_VERSION, false, 0, 0, 0, "without a body"},
	{"version 0", 0, true, 1, 0, 0, "version 0"},
	{"version 2", 2, true, 1, 0, 0, "version 2"},
};

static void test_pack_refuses(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(pack_rows); i++) {
		const struct pack_row *row = &pack_rows[i];
		char *text = xmalloc(row->textlen + 1);
		char err[128] = "";
		Zfarm__Frame f;
		Zfarm__Ping p;
		uint8_t *buf = NULL;
		size_t len = 0;
		int r;

		memset(text, 'x', row->textlen);
		text[row->textlen] = '\0';
		ping_frame(&f, &p, 1, text);
		f.version = row->version;
		if (!row->body)
			f.body_case = ZFARM__FRAME__BODY__NOT_SET;
		r = frame_pack(&f, row->max, &buf, &len, err, sizeof(err));
		free(text);
		if (row->want_len) {
			if (r < 0 || len != row->want_len)
				fail_msg("%s: got r=%d len=%zu (%s), want %zu bytes", row->name, r,
					 len, err, row->want_len);
			free(buf);
			continue;
		}
		if (r == 0)
			fail_msg("%s: got %zu bytes, want an error", row->name, len);
		assert_reason(row->name, err, row->want);
	}
}

static const struct name_row {
	int body_case;
	const char *want;
} name_rows[] = {
	{ZFARM__FRAME__BODY_PING, "ping"},
	{ZFARM__FRAME__BODY_PONG, "pong"},
	{ZFARM__FRAME__BODY_FARM_STATUS, "farm_status"},
	{ZFARM__FRAME__BODY_DELIVERY, "delivery"},
	{ZFARM__FRAME__BODY_QUEUE_CONTROL_REPLY, "queue_control_reply"},
	{ZFARM__FRAME__BODY__NOT_SET, "none"},
	{1, "unknown"}, /* the version field, not a body */
	{13, "unknown"},
	{999, "unknown"},
};

static void test_body_names(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(name_rows); i++) {
		Zfarm__Frame f;

		frame_init(&f, 0);
		f.body_case = (Zfarm__Frame__BodyCase)name_rows[i].body_case;
		if (strcmp(frame_body_name(&f), name_rows[i].want) != 0)
			fail_msg("body case %d: got \"%s\", want \"%s\"", name_rows[i].body_case,
				 frame_body_name(&f), name_rows[i].want);
	}
}

/* ---- strict decoding ---- */

/* A valid frame: version 1 (08 01), an empty ping (52 00). */
#define VALID 0, 0, 0, 4, 0x08, 0x01, 0x52, 0x00

static const struct decode_row {
	const char *name;
	uint8_t bytes[16];
	size_t len;
	size_t max;
	const char *want; /* NULL: a ping */
} decode_rows[] = {
	{"valid", {VALID}, 8, 0, NULL},
	{"valid at max", {VALID}, 8, 4, NULL},
	{"header 0 bytes", {0}, 0, 0, "truncated"},
	{"header 1 byte", {0}, 1, 0, "truncated"},
	{"header 2 bytes", {0, 0}, 2, 0, "truncated"},
	{"header 3 bytes", {0, 0, 0}, 3, 0, "truncated"},
	{"header only", {0, 0, 0, 4}, 4, 0, "truncated"},
	{"body short", {VALID}, 7, 0, "truncated"},
	{"trailing byte", {VALID, 0}, 9, 0, "trailing"},
	{"two frames", {VALID, VALID}, 16, 0, "trailing"},
	{"zero length", {0, 0, 0, 0}, 4, 0, "empty"},
	{"zero length, bytes", {0, 0, 0, 0, 0x08, 0x01}, 6, 0, "empty"},
	{"length 0xFFFFFFFF", {0xff, 0xff, 0xff, 0xff}, 4, 0, "oversize"},
	{"0xFFFFFFFF at limit", {0xff, 0xff, 0xff, 0xff, 0x08}, 5, FRAME_MAX_LIMIT, "oversize"},
	{"over small max", {VALID}, 8, 3, "oversize"},
	{"garbage body", {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, 0, "undecodable"},
	{"submessage overruns", {0, 0, 0, 4, 0x08, 0x01, 0x52, 0x05}, 8, 0, "undecodable"},
	{"version 2", {0, 0, 0, 4, 0x08, 0x02, 0x52, 0x00}, 8, 0, "version 2"},
	{"version absent", {0, 0, 0, 2, 0x52, 0x00}, 6, 0, "version 0"},
	{"body not set", {0, 0, 0, 2, 0x08, 0x01}, 6, 0, "without a body"},
	{"unknown body 99", {0, 0, 0, 5, 0x08, 0x01, 0x98, 0x06, 0x01}, 9, 0, "without a body"},
};

static void test_decode_exact(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(decode_rows); i++) {
		const struct decode_row *row = &decode_rows[i];
		char err[128] = "";
		Zfarm__Frame *f =
		    frame_decode_exact(row->bytes, row->len, row->max, err, sizeof(err));

		if (row->want == NULL) {
			if (f == NULL)
				fail_msg("%s: got error \"%s\", want a frame", row->name, err);
			assert_string_equal(frame_body_name(f), "ping");
			assert_string_equal(f->ping->text, "");
			frame_free(&f);
			continue;
		}
		if (f != NULL)
			fail_msg("%s: got a %s frame, want an error", row->name,
				 frame_body_name(f));
		assert_reason(row->name, err, row->want);
	}
}

/* ---- fuzz ---- */

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * UINT64_C(2685821657736338717);
}

struct pool {
	uint8_t *buf[8];
	size_t len[8];
	size_t n;
};

static void pool_init(struct pool *pool)
{
	char long_text[300];

	memset(long_text, 'q', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	pool->n = 0;
	for (size_t i = 0; i < NROWS(codec_rows); i++) {
		struct bodies b;
		Zfarm__Frame f;
		char err[128];

		codec_rows[i].build(&f, &b);
		if (frame_pack(&f, 0, &pool->buf[pool->n], &pool->len[pool->n], err, sizeof(err)) <
		    0)
			fail_msg("pool: %s", err);
		pool->n++;
	}
	pool->buf[pool->n] = pack_ping(1, long_text, &pool->len[pool->n]);
	pool->n++;
}

static void pool_free(struct pool *pool)
{
	for (size_t i = 0; i < pool->n; i++)
		free(pool->buf[i]);
}

#define FUZZ_CAP 2048

/* fuzz_case - one input: random bytes or a mutated valid frame stream. */
static size_t fuzz_case(const struct pool *pool, uint8_t *out)
{
	size_t len = 0, k;
	unsigned mode = (unsigned)(rng() % 8), frames = 1 + (mode == 7 ? rng() % 3 : 0);

	if (mode <= 1) {
		len = rng() % 48;
		for (size_t i = 0; i < len; i++)
			out[i] = (uint8_t)rng();
		if (mode == 1 && len >= 4) {
			out[0] = out[1] = 0;
			out[2] = (uint8_t)(rng() % 2);
			out[3] = (uint8_t)(len - 4 + rng() % 3 - 1);
		}
		return len;
	}
	for (unsigned i = 0; i < frames; i++) {
		k = (size_t)(rng() % pool->n);
		memcpy(out + len, pool->buf[k], pool->len[k]);
		len += pool->len[k];
	}
	switch (mode) {
	case 2: /* bit flips */
		for (k = 1 + rng() % 8; k > 0; k--)
			out[rng() % len] ^= (uint8_t)(1u << rng() % 8);
		break;
	case 3: /* truncation */
		len = (size_t)(rng() % len);
		break;
	case 4: /* length prefix corruption */
		if (rng() % 2)
			out[rng() % 4] = (uint8_t)rng();
		else
			out[3] = (uint8_t)(out[3] + rng() % 5 - 2);
		break;
	case 5: /* trailing garbage */
		for (k = 1 + rng() % 8; k > 0; k--)
			out[len++] = (uint8_t)rng();
		break;
	case 7: /* several frames, the last maybe cut or flipped */
		if (rng() % 2)
			len -= (size_t)(rng() % 6);
		else
			out[len - 1 - rng() % 4] ^= (uint8_t)rng();
		break;
	default: /* 6: intact */
		break;
	}
	return len;
}

static size_t fuzz_max(void)
{
	static const size_t maxes[] = {0, 16, 64, 300, FRAME_MAX_LIMIT};

	return maxes[rng() % NROWS(maxes)];
}

static void test_fuzz_decode_exact(void **state)
{
	struct pool pool;
	uint8_t buf[FUZZ_CAP];
	unsigned decoded = 0;

	(void)state;
	rng_state = UINT64_C(0x5eed0f2a2a11);
	pool_init(&pool);
	for (unsigned it = 0; it < FUZZ_ITERATIONS; it++) {
		size_t len = fuzz_case(&pool, buf), max = fuzz_max();
		char err[128] = "";
		Zfarm__Frame *f = frame_decode_exact(buf, len, max, err, sizeof(err));
		const char *problem;

		if (f == NULL) {
			if (err[0] == '\0')
				fail_msg("iteration %u: got NULL without a reason, want one", it);
			continue;
		}
		decoded++;
		problem = frame_problem(f);
		if (problem)
			fail_msg("iteration %u: got a %s frame that is bad (%s), want none", it,
				 frame_body_name(f), problem);
		frame_free(&f);
	}
	pool_free(&pool);
	/* The intact cases must have decoded: the fuzz reaches past the checks. */
	if (decoded < FUZZ_ITERATIONS / 20)
		fail_msg("got %u decoded frames, want at least %u", decoded, FUZZ_ITERATIONS / 20);
}

/*
 * stream_model - what a frame_conn must make of a byte stream followed by
 * EOF: how many frames, and whether it ends cleanly.
 */
static unsigned stream_model(const uint8_t *buf, size_t len, size_t max, bool *clean)
{
	size_t off = 0, n;
	unsigned frames = 0;
	Zfarm__Frame *f;
	char err[128];

	*clean = false;
	max = max ? max : FRAME_MAX_DEFAULT;
	while (len - off >= FRAME_HEADER_SIZE) {
		n = (size_t)buf[off] << 24 | (size_t)buf[off + 1] << 16 |
		    (size_t)buf[off + 2] << 8 | buf[off + 3];
		if (n == 0 || n > max || len - off - FRAME_HEADER_SIZE < n)
			return frames;
		f = frame_decode_exact(buf + off, FRAME_HEADER_SIZE + n, max, err, sizeof(err));
		if (f == NULL)
			return frames;
		frame_free(&f);
		frames++;
		off += FRAME_HEADER_SIZE + n;
	}
	*clean = off == len;
	return frames;
}

static void test_fuzz_conn(void **state)
{
	struct event_base *base = event_base_new();
	struct pool pool;
	uint8_t buf[FUZZ_CAP];
	unsigned clean_runs = 0;

	(void)state;
	rng_state = UINT64_C(0xc0ffee15bad);
	pool_init(&pool);
	for (unsigned it = 0; it < FUZZ_ITERATIONS; it++) {
		size_t len = fuzz_case(&pool, buf), max = fuzz_max();
		struct rx rx = {0};
		unsigned want;
		bool clean;
		int sv[2];

		want = stream_model(buf, len, max, &clean);
		make_pair(sv);
		write_all(sv[1], buf, len);
		close(sv[1]);
		rx_open(&rx, base, sv[0], max);
		rx.any_ids = true;
		rx_until_closed(&rx, "fuzz");
		rx_assert_good(&rx, "fuzz");
		if (rx.nclose != 1 || rx.nframes != want || (rx.reason[0] == '\0') != clean)
			fail_msg("iteration %u: got %u frames, %u closes, reason \"%s\"; "
				 "want %u frames, 1 close, %s",
				 it, rx.nframes, rx.nclose, rx.reason, want,
				 clean ? "clean EOF" : "a reason");
		clean_runs += clean;
	}
	pool_free(&pool);
	event_base_free(base);
	assert_true(clean_runs > 0);
}

/* ---- frame_conn over a socketpair ---- */

static const struct stream_row {
	const char *name;
	unsigned nvalid;
	uint8_t tail[16];
	size_t taillen;
	size_t max;
	const char *want; /* "" clean EOF, else a word of the reason */
} stream_rows[] = {
	{"nothing sent", 0, {0}, 0, 0, ""},
	{"clean EOF after 3", 3, {0}, 0, 0, ""},
	{"EOF in header", 1, {0, 0}, 2, 0, "truncated frame at EOF (2 bytes)"},
	{"EOF in body", 2, {0, 0, 0, 4, 0x08}, 5, 0, "truncated frame at EOF (5 bytes)"},
	{"empty frame", 1, {0, 0, 0, 0}, 4, 0, "empty frame"},
	{"oversize", 1, {0, 0, 0, 101}, 4, 100, "oversize frame: 101 bytes, max 100"},
	{"length 0xFFFFFFFF", 0, {0xff, 0xff, 0xff, 0xff}, 4, 0, "oversize"},
	{"garbage", 1, {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, 0, "undecodable"},
	{"version 2", 2, {0, 0, 0, 4, 0x08, 0x02, 0x52, 0x00}, 8, 0, "version 2"},
	{"no body", 1, {0, 0, 0, 2, 0x08, 0x01}, 6, 0, "without a body"},
	{"valid after an error", 1, {0, 0, 0, 1, 0xff, VALID}, 13, 0, "undecodable"},
};

static void test_conn_streams(void **state)
{
	struct event_base *base = event_base_new();

	(void)state;
	for (size_t i = 0; i < NROWS(stream_rows); i++) {
		const struct stream_row *row = &stream_rows[i];
		struct rx rx = {0};
		int sv[2];

		make_pair(sv);
		for (unsigned k = 1; k <= row->nvalid; k++) {
			size_t len;
			uint8_t *buf = pack_ping(k, "stream", &len);

			write_all(sv[1], buf, len);
			free(buf);
		}
		write_all(sv[1], row->tail, row->taillen);
		close(sv[1]);
		rx_open(&rx, base, sv[0], row->max);
		rx_until_closed(&rx, row->name);
		rx_assert_good(&rx, row->name);
		if (rx.nframes != row->nvalid || rx.nclose != 1)
			fail_msg("%s: got %u frames, %u closes; want %u, 1", row->name, rx.nframes,
				 rx.nclose, row->nvalid);
		assert_reason(row->name, rx.reason, row->want);
	}
	event_base_free(base);
}

/* pack_pings - n ping frames, ids first..first+n-1, in one buffer. */
static uint8_t *pack_pings(uint64_t first, unsigned n, size_t *len)
{
	uint8_t *all = NULL;

	*len = 0;
	for (unsigned k = 0; k < n; k++) {
		char text[32];
		size_t flen;
		uint8_t *f;

		snprintf(text, sizeof(text), "frame %u", k);
		f = pack_ping(first + k, text, &flen);
		all = xrealloc(all, *len + flen);
		memcpy(all + *len, f, flen);
		*len += flen;
		free(f);
	}
	return all;
}

static void test_conn_many_in_one_write(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {.want = 200};
	size_t len;
	uint8_t *buf = pack_pings(1, 200, &len);
	int sv[2];

	(void)state;
	make_pair(sv);
	write_all(sv[1], buf, len);
	free(buf);
	rx_open(&rx, base, sv[0], 0);
	while (rx.nframes < 200 && rx.nclose == 0)
		assert_true(run_loop(base, LOOP_DEADLINE_MS));
	if (rx.nframes != 200 || rx.nclose != 0)
		fail_msg("got %u frames, %u closes; want 200, 0", rx.nframes, rx.nclose);
	close(sv[1]);
	rx_until_closed(&rx, "after 200");
	assert_reason("many in one write", rx.reason, "");
	assert_int_equal(rx.last_id, 200);
	rx_assert_good(&rx, "many in one write");
	event_base_free(base);
}

/* A writer that sends one byte per event loop turn, then closes. */
struct dribble {
	int fd;
	uint8_t *buf;
	size_t len, off;
	struct event *ev;
};

static void dribble_step(evutil_socket_t fd, short what, void *arg)
{
	struct dribble *d = arg;
	struct timeval zero = {0, 0};

	(void)fd;
	(void)what;
	write_all(d->fd, d->buf + d->off++, 1);
	if (d->off < d->len)
		evtimer_add(d->ev, &zero);
	else
		close(d->fd);
}

static void test_conn_byte_by_byte(void **state)
{
	struct event_base *base = event_base_new();
	struct dribble d = {0};
	struct rx rx = {0};
	struct timeval zero = {0, 0};
	char long_text[400];
	uint8_t *parts[3];
	size_t lens[3];
	int sv[2];

	(void)state;
	memset(long_text, 'z', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	parts[0] = pack_ping(1, "one", &lens[0]);
	parts[1] = pack_ping(2, long_text, &lens[1]);
	parts[2] = pack_ping(3, "", &lens[2]);
	d.len = lens[0] + lens[1] + lens[2];
	d.buf = xmalloc(d.len);
	for (size_t i = 0, off = 0; i < 3; off += lens[i], i++) {
		memcpy(d.buf + off, parts[i], lens[i]);
		free(parts[i]);
	}
	make_pair(sv);
	d.fd = sv[1];
	d.ev = evtimer_new(base, dribble_step, &d);
	evtimer_add(d.ev, &zero);
	rx_open(&rx, base, sv[0], 0);
	/* Each frame must surface as its last byte goes in (a turn's slack). */
	for (size_t i = 0, end = 0; i < 3; i++) {
		end += lens[i];
		rx.want = (unsigned)i + 1;
		while (rx.nframes <= i && rx.nclose == 0)
			assert_true(run_loop(base, LOOP_DEADLINE_MS));
		if (rx.nframes != i + 1 || d.off < end || d.off > end + 1)
			fail_msg("got frame %u after %zu bytes, want frame %zu after %zu",
				 rx.nframes, d.off, i + 1, end);
	}
	rx_until_closed(&rx, "byte by byte");
	assert_reason("byte by byte", rx.reason, "");
	assert_int_equal(rx.nframes, 3);
	rx_assert_good(&rx, "byte by byte");
	event_free(d.ev);
	free(d.buf);
	event_base_free(base);
}

static void test_conn_free_in_recv(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {.free_at = 2};
	size_t len;
	uint8_t *buf = pack_pings(1, 5, &len);
	int sv[2];

	(void)state;
	make_pair(sv);
	write_all(sv[1], buf, len);
	/* A truncated frame and EOF queued behind: none of it may surface. */
	write_all(sv[1], buf, 6);
	close(sv[1]);
	free(buf);
	rx_open(&rx, base, sv[0], 0);
	assert_true(run_loop(base, LOOP_DEADLINE_MS));
	assert_null(rx.conn);
	/* Give a freed connection every chance to misbehave. */
	assert_false(run_loop(base, 50));
	if (rx.nframes != 2 || rx.nclose != 0)
		fail_msg("got %u frames, %u closes; want 2, 0", rx.nframes, rx.nclose);
	rx_assert_good(&rx, "free in recv");
	event_base_free(base);
}

static void test_conn_pause_resume(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {.pause_at = 2};
	size_t len;
	uint8_t *buf = pack_pings(1, 5, &len);
	int sv[2];

	(void)state;
	make_pair(sv);
	write_all(sv[1], buf, len);
	close(sv[1]); /* EOF queued behind buffered frames */
	free(buf);
	rx_open(&rx, base, sv[0], 0);
	assert_true(run_loop(base, LOOP_DEADLINE_MS));
	assert_false(run_loop(base, 50));
	if (rx.nframes != 2 || rx.nclose != 0)
		fail_msg("paused: got %u frames, %u closes; want 2, 0", rx.nframes, rx.nclose);
	rx.pause_at = 0;
	frame_conn_resume(rx.conn);
	assert_int_equal(rx.nframes, 2); /* never from inside resume */
	rx_until_closed(&rx, "resumed");
	assert_reason("resumed", rx.reason, "");
	if (rx.nframes != 5)
		fail_msg("resumed: got %u frames, want 5", rx.nframes);
	rx_assert_good(&rx, "pause/resume");
	event_base_free(base);
}

/* A raw reader on the far end: collects every byte until EOF. */
struct sink {
	struct event_base *base;
	struct event *ev;
	uint8_t *buf;
	size_t len;
	bool eof;
	int error;
};

static void sink_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct sink *s = arg;
	ssize_t r;

	(void)what;
	s->buf = xrealloc(s->buf, s->len + 65536);
	r = read((int)fd, s->buf + s->len, 65536);
	if (r > 0) {
		s->len += (size_t)r;
		return;
	}
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	s->error = r < 0 ? errno : 0;
	s->eof = true;
	event_del(s->ev);
	event_base_loopbreak(s->base);
}

static void sink_open(struct sink *s, struct event_base *base, int fd)
{
	s->base = base;
	evutil_make_socket_nonblocking(fd);
	s->ev = event_new(base, fd, EV_READ | EV_PERSIST, sink_on_read, s);
	event_add(s->ev, NULL);
}

/* sink_frames - split what the sink got into frames; fails on anything odd. */
static unsigned sink_frames(const struct sink *s, Zfarm__Frame **out, unsigned max)
{
	size_t off = 0, n;
	unsigned count = 0;
	char err[128];

	while (off < s->len) {
		if (s->len - off < FRAME_HEADER_SIZE || count == max)
			fail_msg("sink: got %zu stray bytes after %u frames, want none",
				 s->len - off, count);
		n = (size_t)s->buf[off + 2] << 8 | s->buf[off + 3];
		n |= (size_t)s->buf[off] << 24 | (size_t)s->buf[off + 1] << 16;
		if (s->len - off - FRAME_HEADER_SIZE < n)
			fail_msg("sink: frame %u truncated", count);
		out[count] =
		    frame_decode_exact(s->buf + off, FRAME_HEADER_SIZE + n, 0, err, sizeof(err));
		if (out[count] == NULL)
			fail_msg("sink: frame %u: %s", count, err);
		count++;
		off += FRAME_HEADER_SIZE + n;
	}
	return count;
}

static void test_conn_close_after_flush(void **state)
{
	enum { N = 1000 };
	struct event_base *base = event_base_new();
	struct rx rx = {.flush_at = 1};
	struct sink sink = {0};
	Zfarm__Frame f, **got = xcalloc(N + 2, sizeof(*got));
	Zfarm__Ping p;
	char text[1024], err[128];
	unsigned n;
	int sv[2];

	(void)state;
	make_pair(sv);
	/* The frame that triggers the flush, and one that must be ignored. */
	ping_frame(&f, &p, 1, "trigger");
	assert_int_equal(frame_write_fd(sv[1], &f, err, sizeof(err)), 0);
	ping_frame(&f, &p, 2, "ignored");
	assert_int_equal(frame_write_fd(sv[1], &f, err, sizeof(err)), 0);
	rx_open(&rx, base, sv[0], 0);
	/* Far more than a socket holds, so the flush takes many turns. */
	memset(text, 'f', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	for (unsigned i = 1; i <= N; i++) {
		ping_frame(&f, &p, i, text);
		assert_int_equal(frame_conn_send(rx.conn, &f, err, sizeof(err)), 0);
	}
	assert_true(frame_conn_output_pending(rx.conn) > N * (sizeof(text) - 1));
	sink_open(&sink, base, sv[1]);
	while (rx.nclose == 0 || !sink.eof)
		if (!run_loop(base, LOOP_DEADLINE_MS))
			fail_msg("got close %u, sink EOF %d, want both", rx.nclose, sink.eof);
	assert_reason("close after flush", rx.reason, "");
	if (rx.nframes != 1 || sink.error)
		fail_msg("got %u frames delivered, sink error %d; want 1, 0", rx.nframes,
			 sink.error);
	rx_assert_good(&rx, "close after flush");
	n = sink_frames(&sink, got, N + 2);
	if (n != N + 1)
		fail_msg("sink: got %u frames, want %u", n, N + 1);
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(got[i]->request_id, i + 1);
	assert_string_equal(frame_body_name(got[N]), "pong");
	assert_string_equal(got[N]->pong->text, "bye");
	for (unsigned i = 0; i < n; i++)
		frame_free(&got[i]);
	free(got);
	event_free(sink.ev);
	free(sink.buf);
	close(sv[1]);
	event_base_free(base);
}

static void send_bulk(struct frame_conn *conn, unsigned n, size_t text_len)
{
	char *text = xmalloc(text_len + 8), err[128];
	Zfarm__Frame f;
	Zfarm__Ping p;

	for (unsigned id = 1; id <= n; id++) {
		size_t len = text_len + id % 7;

		memset(text, 'a' + id % 26, len);
		text[len] = '\0';
		ping_frame(&f, &p, id, text);
		if (frame_conn_send(conn, &f, err, sizeof(err)) < 0)
			fail_msg("send %u: %s", id, err);
	}
	free(text);
}

static void test_conn_bulk_both_ways(void **state)
{
	enum { N = 1000, TEXT = 10000 };
	struct event_base *base = event_base_new();
	struct rx a = {.want = N, .text_len = TEXT}, b = {.want = N, .text_len = TEXT};
	int sv[2];

	(void)state;
	make_pair(sv);
	rx_open(&a, base, sv[0], 0);
	rx_open(&b, base, sv[1], 0);
	send_bulk(a.conn, N, TEXT);
	send_bulk(b.conn, N, TEXT);
	while ((a.nframes < N || b.nframes < N) && a.nclose + b.nclose == 0)
		if (!run_loop(base, LOOP_DEADLINE_MS))
			fail_msg("got %u and %u frames, want %u each", a.nframes, b.nframes, N);
	if (a.nframes != N || b.nframes != N || a.nclose + b.nclose != 0)
		fail_msg("got %u/%u frames, %u/%u closes; want %u each, no close", a.nframes,
			 b.nframes, a.nclose, b.nclose, N);
	rx_assert_good(&a, "bulk a");
	rx_assert_good(&b, "bulk b");
	assert_int_equal(frame_conn_output_pending(a.conn), 0);
	frame_conn_free(&a.conn);
	frame_conn_free(&b.conn);
	event_base_free(base);
}

/*
 * Frames queued in one loop turn leave in one write at the end of that
 * turn, and a socket with room costs no registration for writability: the
 * base never holds more registered events than the read event it had.
 */
static void test_conn_direct_write(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {0};
	Zfarm__Frame f, *got;
	Zfarm__Ping p;
	char err[128];
	uint8_t buf[4096];
	ssize_t n;
	size_t off = 0;
	int added, sv[2];

	(void)state;
	make_pair(sv);
	rx_open(&rx, base, sv[0], 0);
	added = evtest_registered(base);
	for (unsigned i = 1; i <= 3; i++) {
		ping_frame(&f, &p, i, "direct");
		assert_int_equal(frame_conn_send(rx.conn, &f, err, sizeof(err)), 0);
	}
	assert_int_equal(evtest_registered(base), added);
	/* Nothing is written before the loop runs ... */
	assert_int_equal(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), -1);
	assert_int_equal(errno, EAGAIN);
	/* ... and all of it after one turn (no second turn to find the socket writable). */
	assert_int_equal(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
	assert_int_equal(frame_conn_output_pending(rx.conn), 0);
	assert_int_equal(evtest_registered(base), added);
	n = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
	assert_true(n > 0);
	for (unsigned i = 1; i <= 3; i++) {
		uint32_t len;

		assert_true((size_t)n - off >= 4);
		len = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 |
		      (uint32_t)buf[off + 2] << 8 | buf[off + 3];
		assert_true((size_t)n - off - 4 >= len);
		got = frame_unpack(buf + off + 4, len, err, sizeof(err));
		assert_non_null(got);
		assert_int_equal(got->request_id, i);
		frame_free(&got);
		off += 4 + len;
	}
	assert_int_equal(off, (size_t)n);
	frame_conn_free(&rx.conn);
	close(sv[1]);
	event_base_free(base);
}

/* What the socket does not take is written later, under the write timeout. */
static void test_conn_write_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {0};
	int sv[2];

	(void)state;
	make_pair(sv);
	rx_open(&rx, base, sv[0], 0);
	frame_conn_pause(rx.conn); /* no read timeout: only the write one counts */
	frame_conn_set_timeouts(rx.conn, 0, 100);
	send_bulk(rx.conn, 200, 10000); /* 2 MB: more than the socket holds */
	rx_until_closed(&rx, "write timeout");
	assert_reason("peer not reading", rx.reason, "write timeout");
	assert_null(rx.conn); /* freed by the close callback */
	close(sv[1]);
	event_base_free(base);
}

static void test_conn_read_timeout(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {0};
	size_t len;
	uint8_t *buf = pack_pings(1, 1, &len);
	uint64_t start, took;
	int sv[2];

	(void)state;
	make_pair(sv);
	write_all(sv[1], buf, len);
	free(buf);
	rx_open(&rx, base, sv[0], 0);
	frame_conn_set_timeouts(rx.conn, 100, 100);
	start = now_ms();
	rx_until_closed(&rx, "read timeout");
	took = now_ms() - start;
	assert_reason("idle", rx.reason, "read timeout");
	assert_int_equal(rx.nframes, 1);
	if (took < 90 || took > 2000)
		fail_msg("got the timeout after %llu ms, want about 100", (unsigned long long)took);
	close(sv[1]);
	event_base_free(base);
}

static void test_conn_write_error(void **state)
{
	struct event_base *base = event_base_new();
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	struct rx rx = {0};
	Zfarm__Frame f;
	Zfarm__Ping p;
	char err[128];
	int sv[2];

	(void)state;
	/* libevent writes with writev(): daemons ignore SIGPIPE, so do we here. */
	sigaction(SIGPIPE, &ign, &old);
	make_pair(sv);
	close(sv[1]);
	rx_open(&rx, base, sv[0], 0);
	frame_conn_pause(rx.conn); /* so the EOF is not seen first */
	ping_frame(&f, &p, 1, "into the void");
	assert_int_equal(frame_conn_send(rx.conn, &f, err, sizeof(err)), 0);
	rx_until_closed(&rx, "write error");
	assert_reason("write error", rx.reason, "write error: Broken pipe");
	sigaction(SIGPIPE, &old, NULL);
	event_base_free(base);
}

static void test_conn_accessors(void **state)
{
	struct event_base *base = event_base_new();
	struct rx first = {0}, second = {.want = 1};
	Zfarm__Frame f, *got;
	Zfarm__Ping p;
	size_t len;
	uint8_t *buf = pack_pings(1, 1, &len);
	char err[128];
	int sv[2], fd;

	(void)state;
	make_pair(sv);
	fd = sv[0];
	rx_open(&first, base, fd, 0);
	assert_int_equal(frame_conn_fd(first.conn), fd);
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	ping_frame(&f, &p, 1, "frame 0");
	assert_int_equal(frame_conn_send(first.conn, &f, err, sizeof(err)), 0);
	assert_int_equal(frame_conn_output_pending(first.conn), len);
	f.body_case = ZFARM__FRAME__BODY__NOT_SET;
	assert_int_equal(frame_conn_send(first.conn, &f, err, sizeof(err)), -1);
	assert_reason("send without body", err, "without a body");
	/* From here on the callbacks go to second. */
	second.base = base;
	second.conn = first.conn;
	first.conn = NULL;
	frame_conn_set_arg(second.conn, &second);
	write_all(sv[1], buf, len);
	assert_true(run_loop(base, LOOP_DEADLINE_MS));
	if (first.nframes != 0 || second.nframes != 1)
		fail_msg("got %u and %u frames, want 0 and 1", first.nframes, second.nframes);
	assert_int_equal(frame_conn_output_pending(second.conn), 0);
	got = frame_read_fd(sv[1], 0, 1000, err, sizeof(err));
	if (got == NULL)
		fail_msg("peer: got \"%s\", want the frame", err);
	assert_string_equal(got->ping->text, "frame 0");
	frame_free(&got);
	frame_conn_free(&second.conn);
	assert_null(second.conn);
	frame_conn_free(&second.conn);
	frame_conn_free(NULL);
	/* The fd went with the connection (closed by libevent's finalizer). */
	event_base_loop(base, EVLOOP_NONBLOCK);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	got = frame_read_fd(sv[1], 0, 1000, err, sizeof(err));
	assert_null(got);
	assert_string_equal(err, "");
	close(sv[1]);
	free(buf);
	event_base_free(base);
}

/* frame_conn_free() writes what is queued before it lets go of the fd. */
static void test_conn_free_flushes(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {0};
	Zfarm__Frame f, *got;
	Zfarm__Ping p;
	char err[128];
	int sv[2];

	(void)state;
	make_pair(sv);
	rx_open(&rx, base, sv[0], 0);
	for (unsigned id = 1; id <= 3; id++) {
		ping_frame(&f, &p, id, "last words");
		assert_int_equal(frame_conn_send(rx.conn, &f, err, sizeof(err)), 0);
	}
	frame_conn_free(&rx.conn);
	event_base_loop(base, EVLOOP_NONBLOCK);
	for (unsigned id = 1; id <= 3; id++) {
		got = frame_read_fd(sv[1], 0, 1000, err, sizeof(err));
		if (got == NULL || got->request_id != id)
			fail_msg("got %s, want frame %u", got ? frame_body_name(got) : err, id);
		frame_free(&got);
	}
	got = frame_read_fd(sv[1], 0, 1000, err, sizeof(err));
	if (got != NULL || err[0] != '\0')
		fail_msg("got %s, want a clean EOF", got ? frame_body_name(got) : err);
	close(sv[1]);
	event_base_free(base);
}

static void test_conn_over_bev(void **state)
{
	struct event_base *base = event_base_new();
	struct rx rx = {.want = 3};
	struct bufferevent *bev;
	size_t len;
	uint8_t *buf = pack_pings(1, 3, &len);
	int sv[2];

	(void)state;
	make_pair(sv);
	evutil_make_socket_nonblocking(sv[0]);
	bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	rx.base = base;
	rx.conn = frame_conn_new_bev(bev, 0, rx_on_recv, rx_on_close, &rx);
	assert_non_null(rx.conn);
	write_all(sv[1], buf, len);
	free(buf);
	close(sv[1]);
	rx_until_closed(&rx, "over bev");
	assert_reason("over bev", rx.reason, "");
	assert_int_equal(rx.nframes, 3);
	rx_assert_good(&rx, "over bev");
	event_base_free(base);
}

/* ---- blocking fd I/O ---- */

static void make_transport(bool pipe_it, int fds[2])
{
	int sv[2];

	if (!pipe_it) {
		make_pair(fds);
		return;
	}
	if (pipe(sv) < 0)
		fail_msg("pipe: %s", strerror(errno));
	fds[0] = sv[0];
	fds[1] = sv[1];
}

static void test_fd_roundtrip(void **state)
{
	(void)state;
	for (int pipe_it = 0; pipe_it <= 1; pipe_it++) {
		const char *what = pipe_it ? "pipe" : "socketpair";
		char err[128];
		Zfarm__Frame *got;
		int fds[2];

		make_transport(pipe_it, fds);
		for (size_t i = 0; i < NROWS(codec_rows); i++) {
			struct bodies b;
			Zfarm__Frame f;

			codec_rows[i].build(&f, &b);
			if (frame_write_fd(fds[1], &f, err, sizeof(err)) < 0)
				fail_msg("%s: write %s: %s", what, codec_rows[i].name, err);
		}
		close(fds[1]);
		for (size_t i = 0; i < NROWS(codec_rows); i++) {
			got = frame_read_fd(fds[0], 0, 1000, err, sizeof(err));
			if (got == NULL)
				fail_msg("%s: read %s: got \"%s\", want a frame", what,
					 codec_rows[i].name, err);
			assert_string_equal(frame_body_name(got), codec_rows[i].name);
			codec_rows[i].check(got);
			frame_free(&got);
		}
		strcpy(err, "not cleared");
		got = frame_read_fd(fds[0], 0, 1000, err, sizeof(err));
		if (got != NULL || err[0] != '\0')
			fail_msg("%s: got %s \"%s\" at EOF, want NULL and \"\"", what,
				 got ? "a frame" : "NULL", err);
		close(fds[0]);
	}
}

static const struct fd_row {
	const char *name;
	uint8_t bytes[16];
	size_t len;
	size_t max;
	int timeout_ms;	  /* 0: the writer closes; else it stays silent */
	const char *want; /* NULL: a frame */
} fd_rows[] = {
	{"clean EOF", {0}, 0, 0, 0, ""},
	{"EOF in header", {0, 0}, 2, 0, 0, "truncated frame at EOF (2 bytes)"},
	{"EOF in body", {0, 0, 0, 4, 0x08}, 5, 0, 0, "truncated frame at EOF (5 bytes)"},
	{"empty frame", {0, 0, 0, 0}, 4, 0, 0, "empty frame"},
	{"length 0xFFFFFFFF", {0xff, 0xff, 0xff, 0xff}, 4, 0, 0, "oversize"},
	{"over small max", {VALID}, 8, 3, 0, "oversize frame: 4 bytes, max 3"},
	{"garbage", {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, 0, 0, "undecodable"},
	{"version 2", {0, 0, 0, 4, 0x08, 0x02, 0x52, 0x00}, 8, 0, 0, "version 2"},
	{"no body", {0, 0, 0, 2, 0x08, 0x01}, 6, 0, 0, "without a body"},
	{"silent", {0}, 0, 0, 100, "read timeout"},
	{"silent in header", {0, 0}, 2, 0, 100, "read timeout"},
	{"silent in body", {0, 0, 0, 4, 0x08}, 5, 0, 150, "read timeout"},
	{"ready, zero timeout", {VALID}, 8, 0, -2, NULL},
	{"ready, no timeout", {VALID}, 8, 0, -1, NULL},
};

static void test_fd_read_errors(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(fd_rows); i++) {
		const struct fd_row *row = &fd_rows[i];
		int timeout = row->timeout_ms == -2 ? 0 : row->timeout_ms;
		char err[128] = "not cleared";
		Zfarm__Frame *got;
		uint64_t start, took;
		int sv[2];

		make_pair(sv);
		write_all(sv[1], row->bytes, row->len);
		if (timeout == 0 && row->want)
			close(sv[1]);
		start = now_ms();
		got = frame_read_fd(sv[0], row->max, timeout ? timeout : 1000, err, sizeof(err));
		took = now_ms() - start;
		if (row->want == NULL) {
			if (got == NULL)
				fail_msg("%s: got \"%s\", want a frame", row->name, err);
			frame_free(&got);
		} else {
			if (got != NULL)
				fail_msg("%s: got a frame, want \"%s\"", row->name, row->want);
			assert_reason(row->name, err, row->want);
		}
		if (timeout > 0 &&
		    (took + 2 < (uint64_t)timeout || took > (uint64_t)timeout + 1000))
			fail_msg("%s: got the timeout after %llu ms, want about %d", row->name,
				 (unsigned long long)took, timeout);
		if (timeout != 0 || row->want == NULL)
			close(sv[1]);
		close(sv[0]);
	}
}

/* An echo child on the far end; the near end is non-blocking. */
static void test_fd_nonblocking_big(void **state)
{
	size_t text_len = 3u * 1024 * 1024;
	char *text = xmalloc(text_len + 1), err[128];
	Zfarm__Frame f, *got;
	Zfarm__Ping p;
	int sv[2], status;
	pid_t pid;

	(void)state;
	for (size_t i = 0; i < text_len; i++)
		text[i] = (char)('A' + i % 53 % 26);
	text[text_len] = '\0';
	make_pair(sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		got = frame_read_fd(sv[1], FRAME_MAX_LIMIT, 10000, err, sizeof(err));
		_exit(got && frame_write_fd(sv[1], got, err, sizeof(err)) == 0 ? 0 : 1);
	}
	close(sv[1]);
	assert_int_equal(fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK), 0);
	ping_frame(&f, &p, 42, text);
	if (frame_write_fd(sv[0], &f, err, sizeof(err)) < 0)
		fail_msg("write: got \"%s\", want success", err);
	got = frame_read_fd(sv[0], FRAME_MAX_LIMIT, 10000, err, sizeof(err));
	if (got == NULL)
		fail_msg("read: got \"%s\", want the echo", err);
	assert_int_equal(got->request_id, 42);
	assert_int_equal(strlen(got->ping->text), text_len);
	assert_memory_equal(got->ping->text, text, text_len);
	frame_free(&got);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("echo child: got status %#x, want exit 0", status);
	close(sv[0]);
	free(text);
}

static void test_fd_write_errors(void **state)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
	Zfarm__Frame f;
	Zfarm__Ping p;
	char err[128];
	int sv[2];

	(void)state;
	/* A SIGPIPE would kill the test: frame_write_fd must not raise one. */
	sigaction(SIGPIPE, &dfl, &old);
	make_pair(sv);
	close(sv[1]);
	ping_frame(&f, &p, 1, "nobody listens");
	assert_int_equal(frame_write_fd(sv[0], &f, err, sizeof(err)), -1);
	assert_reason("closed peer", err, "write: Broken pipe");
	f.body_case = ZFARM__FRAME__BODY__NOT_SET;
	assert_int_equal(frame_write_fd(sv[0], &f, err, sizeof(err)), -1);
	assert_reason("no body", err, "without a body");
	close(sv[0]);
	sigaction(SIGPIPE, &old, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_roundtrip),
		cmocka_unit_test(test_pack_refuses),
		cmocka_unit_test(test_body_names),
		cmocka_unit_test(test_decode_exact),
		cmocka_unit_test(test_fuzz_decode_exact),
		cmocka_unit_test(test_fuzz_conn),
		cmocka_unit_test(test_conn_streams),
		cmocka_unit_test(test_conn_many_in_one_write),
		cmocka_unit_test(test_conn_byte_by_byte),
		cmocka_unit_test(test_conn_free_in_recv),
		cmocka_unit_test(test_conn_pause_resume),
		cmocka_unit_test(test_conn_close_after_flush),
		cmocka_unit_test(test_conn_bulk_both_ways),
		cmocka_unit_test(test_conn_read_timeout),
		cmocka_unit_test(test_conn_direct_write),
		cmocka_unit_test(test_conn_write_timeout),
		cmocka_unit_test(test_conn_write_error),
		cmocka_unit_test(test_conn_accessors),
		cmocka_unit_test(test_conn_free_flushes),
		cmocka_unit_test(test_conn_over_bev),
		cmocka_unit_test(test_fd_roundtrip),
		cmocka_unit_test(test_fd_read_errors),
		cmocka_unit_test(test_fd_nonblocking_big),
		cmocka_unit_test(test_fd_write_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
