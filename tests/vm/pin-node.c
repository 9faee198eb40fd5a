/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pin-node: holds memory of one NUMA node with a long-term pin, as RDMA or
 * VFIO do, so that the kernel cannot migrate it and memory blocks holding
 * it cannot go offline. The pin is io_uring's registered buffers
 * (FOLL_LONGTERM), which needs no device. Prints "pinned" when it holds the
 * memory, then waits to be killed.
 *
 * Usage: pin-node NODE MIB
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)
#define PIECE (512 * MiB) /* io_uring takes at most 1 GiB per buffer */

int main(int argc, char **argv) {
        struct io_uring_params params = {};
        struct iovec iov[64];
        unsigned long mask;
        uint64_t size;
        unsigned n = 0;
        char *mem;
        int node, fd;

        if (argc != 3) {
                fprintf(stderr, "usage: pin-node NODE MIB\n");
                return 2;
        }
        node = atoi(argv[1]);
        size = strtoull(argv[2], NULL, 10) * MiB;
        if (node < 0 || node >= 64 || size == 0 || size > 64 * PIECE) {
                fprintf(stderr, "pin-node: bad node or size\n");
                return 2;
        }
        mask = 1UL << node;
        mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) {
                perror("pin-node: mmap");
                return 1;
        }
        /* MPOL_BIND (2): the pages come from this node only. */
        if (syscall(SYS_mbind, mem, size, 2, &mask, 64, 0) < 0) {
                perror("pin-node: mbind");
                return 1;
        }
        memset(mem, 0x5a, size);

        fd = (int) syscall(SYS_io_uring_setup, 1, &params);
        if (fd < 0) {
                perror("pin-node: io_uring_setup");
                return 77;
        }
        for (uint64_t off = 0; off < size; off += PIECE)
                iov[n++] = (struct iovec) { mem + off, size - off < PIECE ? size - off : PIECE };
        if (syscall(SYS_io_uring_register, fd, IORING_REGISTER_BUFFERS, iov, n) < 0) {
                perror("pin-node: io_uring_register");
                return 1;
        }
        printf("pinned %" PRIu64 " MiB on node %d\n", size / MiB, node);
        fflush(stdout);
        for (;;)
                pause();
}
