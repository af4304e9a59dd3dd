/*
 * iscsi-xfer: a small libiscsi client for the interop tests.
 *
 *   iscsi-xfer [-i INITIATOR] write URL FILE      copy FILE to the start of the LUN
 *   iscsi-xfer [-i INITIATOR] read URL FILE [N]   copy the first N bytes (default: all) to FILE
 *
 * URL is a libiscsi URL, so it may carry one-way CHAP (user%secret@host), mutual CHAP
 * (?target_user=NAME&target_password=SECRET) and ?header_digest=crc32c.  QEMU's iscsi driver
 * cannot do mutual CHAP, so the tests use this tool for that case.
 *
 * Exit status: 0 on success, 1 on usage errors, 2 on login failure, 3 on I/O failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define CHUNK (256 * 1024)

static void usage(void)
{
	fprintf(stderr, "usage: iscsi-xfer [-i INITIATOR] write URL FILE\n"
			"       iscsi-xfer [-i INITIATOR] read URL FILE [BYTES]\n");
	exit(1);
}

static int full_write(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static ssize_t full_read(int fd, unsigned char *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, p + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int main(int argc, char **argv)
{
	const char *initiator = "iqn.2026-11.org.isthmus:xfer";
	int c;
	while ((c = getopt(argc, argv, "i:")) != -1) {
		if (c == 'i')
			initiator = optarg;
		else
			usage();
	}
	if (argc - optind < 3)
		usage();
	const char *mode = argv[optind], *url = argv[optind + 1], *path = argv[optind + 2];
	int writing = strcmp(mode, "write") == 0;
	if (!writing && strcmp(mode, "read") != 0)
		usage();

	struct iscsi_context *iscsi = iscsi_create_context(initiator);
	if (!iscsi) {
		fprintf(stderr, "iscsi-xfer: cannot create a context\n");
		return 2;
	}
	struct iscsi_url *u = iscsi_parse_full_url(iscsi, url);
	if (!u) {
		fprintf(stderr, "iscsi-xfer: bad URL: %s\n", iscsi_get_error(iscsi));
		return 1;
	}
	iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
	if (iscsi_full_connect_sync(iscsi, u->portal, u->lun) != 0) {
		fprintf(stderr, "iscsi-xfer: login failed: %s\n", iscsi_get_error(iscsi));
		return 2;
	}
	int lun = u->lun;

	struct scsi_task *task = iscsi_readcapacity16_sync(iscsi, lun);
	if (!task || task->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "iscsi-xfer: READ CAPACITY(16) failed: %s\n", iscsi_get_error(iscsi));
		return 3;
	}
	struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(task);
	if (!rc16 || rc16->block_length == 0) {
		fprintf(stderr, "iscsi-xfer: bad READ CAPACITY(16) data\n");
		return 3;
	}
	uint32_t bs = rc16->block_length;
	uint64_t capacity = (rc16->returned_lba + 1) * (uint64_t)bs;
	scsi_free_scsi_task(task);

	unsigned char *buf = malloc(CHUNK);
	if (!buf || CHUNK % bs != 0) {
		fprintf(stderr, "iscsi-xfer: block size %u not supported\n", bs);
		return 3;
	}

	int rc = 0;
	uint64_t done = 0;
	if (writing) {
		int fd = open(path, O_RDONLY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0) {
			perror(path);
			return 1;
		}
		if ((uint64_t)st.st_size % bs != 0 || (uint64_t)st.st_size > capacity) {
			fprintf(stderr, "iscsi-xfer: %s: size %lld is not a multiple of %u or exceeds the LUN (%llu)\n",
				path, (long long)st.st_size, bs, (unsigned long long)capacity);
			return 1;
		}
		for (;;) {
			ssize_t n = full_read(fd, buf, CHUNK);
			if (n < 0) {
				perror(path);
				return 1;
			}
			if (n == 0)
				break;
			task = iscsi_write16_sync(iscsi, lun, done / bs, buf, (uint32_t)n, (int)bs, 0, 0, 0, 0, 0);
			if (!task || task->status != SCSI_STATUS_GOOD) {
				fprintf(stderr, "iscsi-xfer: WRITE(16) at byte %llu failed: %s\n",
					(unsigned long long)done, iscsi_get_error(iscsi));
				rc = 3;
				break;
			}
			scsi_free_scsi_task(task);
			done += (uint64_t)n;
		}
		close(fd);
	} else {
		uint64_t want = capacity;
		if (argc - optind >= 4)
			want = strtoull(argv[optind + 3], NULL, 0);
		if (want % bs != 0 || want > capacity) {
			fprintf(stderr, "iscsi-xfer: %llu bytes is not a multiple of %u or exceeds the LUN\n",
				(unsigned long long)want, bs);
			return 1;
		}
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0) {
			perror(path);
			return 1;
		}
		while (done < want) {
			uint32_t n = want - done > CHUNK ? CHUNK : (uint32_t)(want - done);
			task = iscsi_read16_sync(iscsi, lun, done / bs, n, (int)bs, 0, 0, 0, 0, 0);
			if (!task || task->status != SCSI_STATUS_GOOD || task->datain.size != (int)n) {
				fprintf(stderr, "iscsi-xfer: READ(16) at byte %llu failed: %s\n",
					(unsigned long long)done, iscsi_get_error(iscsi));
				rc = 3;
				break;
			}
			if (full_write(fd, task->datain.data, n) != 0) {
				perror(path);
				rc = 1;
				break;
			}
			scsi_free_scsi_task(task);
			done += n;
		}
		close(fd);
	}
	free(buf);
	iscsi_logout_sync(iscsi);
	iscsi_destroy_url(u);
	iscsi_destroy_context(iscsi);
	if (rc == 0)
		fprintf(stderr, "iscsi-xfer: %s %llu bytes, block size %u\n", writing ? "wrote" : "read",
			(unsigned long long)done, bs);
	return rc;
}
