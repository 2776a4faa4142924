#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of bufpool_fuzz (fuzz/corpus/): one small input per operation family,
# in the byte encoding fuzz/decoder.hpp decodes. Usage: fuzz/make-corpus.py [output dir]
import os
import struct
import sys

# Opcodes (the first byte of every operation; decoder.hpp's operation_for takes it modulo 32).
ACQUIRE, ACQUIRE_RAW = 0, 4
RELEASE_RAW_OFFSET, RELEASE_RAW_POINTER = 6, 7
RECLAIM, DESTROY, TRY_RESIZE = 8, 9, 10
GUARD, TRY_UNGUARD, UNGUARD_UNCHECKED, SET_FLAG, COLLECT = 11, 12, 13, 14, 15
BEGIN_EXPAND, INITIALIZE, ABANDON = 16, 17, 18
RAW_MISUSE, MOVE, RESIZE_RAW, INITIALIZE_MISUSE, ACCESS = 19, 20, 21, 22, 23
PMR_ALLOCATE, PMR_DEALLOCATE, PMR_MISUSE, PMR_RELEASE, FULL_CHECK = 24, 27, 28, 29, 30


def u16(v):
    return struct.pack("<H", v)


def u32(v):
    return struct.pack("<I", v)


# ---- Arguments --------------------------------------------------------------------------


def size_small(n):  # 1..256
    return bytes([0, n - 1])


def size_medium(n):  # 1..4096
    return bytes([128]) + u16(n - 1)


def size_large(n):  # 1..1 MiB
    return bytes([176]) + u32(n - 1)


def size_zero():
    return bytes([200])


def size_huge(which):  # 0: 2^32-1, 1: 2^32, 2: 2^31, 3: 2^64-1, 4: 2^32 + u16
    k = 220 + (which - 220 % 5) % 5
    return bytes([k]) + u16(0)


def align_log2(n):  # 1 << n for n in 0..13
    return bytes([n])


def align_invalid(which):  # 0, 3, 6, 24, 48, 100, 4097, 2^64-1
    return bytes([200 + which])


def align_too_big():  # 2^48: above any u32 pool's maximum
    return bytes([240])


OPTIMAL, GOOD_FIT, GREEDY = 0, 3, 4
BORROWED, SHARED, WEAK = 0, 2 << 3, 3 << 3


def fixed(selector, which=0, extra=b"", round_up=True):
    """Selectors: 0 end of a live range, 1 start of one, 2 region + u16, 3 a free gap,
    4 a pending reservation, 5 u32, 6 near the top, 7 beyond 32 bits."""
    sel = selector | (0x10 if round_up else 0)
    return bytes([6, sel, which]) + extra


def request(size, align, strategy=OPTIMAL, ref=BORROWED):
    if isinstance(strategy, bytes):  # fixed(...)
        return size + align + bytes([strategy[0] | ref]) + strategy[1:]
    return size + align + bytes([strategy | ref])


def acquire(size, align=align_log2(4), strategy=OPTIMAL, ref=BORROWED):
    return bytes([ACQUIRE]) + request(size, align, strategy, ref)


def acquire_raw(size, align=align_log2(4), strategy=OPTIMAL):
    return bytes([ACQUIRE_RAW]) + request(size, align, strategy)


def expand_small(n):  # 1..16384 bytes
    return bytes([BEGIN_EXPAND, 0]) + u16(n - 1)


def expand_pages(pages):  # 4 KiB * pages, pages 1..64
    return bytes([BEGIN_EXPAND, 96, pages - 1])


def expand_to_end(short_by):  # the rest of the offset space minus short_by
    return bytes([BEGIN_EXPAND, 204]) + u16(short_by)


def expand_past_end(extra):  # more than the rest: searches the holes
    return bytes([BEGIN_EXPAND, 224, extra])


def expand_zero():
    return bytes([BEGIN_EXPAND, 192])


def expand_huge(which):  # 2^32-1, 2^32, 2^64-1, 2^31
    return bytes([BEGIN_EXPAND, 240 + which])


def op(code, *args):
    return bytes([code, *args])


def config(option_set=0, region=4096):
    """Byte 0: pool options (0 default, 1 min_alignment 1, 2 min_alignment 64, 3 max_size
    4096, 4 min_size 100, 5 max_size 300, 6 min_alignment 4096), then an initial region of
    `region` bytes (>= 256), or none."""
    if region is None:
        return bytes([option_set | 0x80])
    return bytes([option_set]) + u16(region - 256)


def pmr_buffer(size, misalign):  # first pmr op only: a resource over a user buffer
    return bytes([1]) + u16(size) + bytes([misalign])


def pmr_growth(first_quads, growth, max_steps, thread_safe=True):  # first pmr op only
    return bytes([2 if thread_safe else 0]) + u16(first_quads) + bytes([growth, max_steps])


def pmr_bytes_small(n):  # 1..256
    return bytes([0, n - 1])


def pmr_bytes_u16(n):
    return bytes([160]) + u16(n)


def pmr_bytes_zero():
    return bytes([200])


def pmr_bytes_huge(which):  # SIZE_MAX, SIZE_MAX-4095, SIZE_MAX-4096, 2^40, 2^62
    k = 240 + (which - 240 % 5) % 5
    return bytes([k])


def pmr_align_log2(n):  # 1 .. 4096
    return bytes([n])


def pmr_align_dedicated(which):  # 8192, 16384, 32768
    return bytes([201 + (which - 201 % 3) % 3])


def pmr_align_invalid(which):  # 0, 3, 12, 4095
    return bytes([224 + which])


def pmr_allocate(nbytes, align, first=b""):
    return bytes([PMR_ALLOCATE]) + first + nbytes + align


# ---- Seeds ------------------------------------------------------------------------------

seeds = {}

seeds["acquire-release"] = (
    config(0, 4096)
    + acquire(size_small(100))
    + acquire(size_medium(1000), align_log2(6))
    + acquire(size_small(1), align_log2(0))
    + acquire(size_small(200), align_log2(8), ref=SHARED)
    + acquire(size_small(64), ref=WEAK)
    + op(DESTROY, 1)
    + op(RECLAIM, 0)
    + acquire(size_medium(2000))
    + op(ACCESS, 2)
    + op(FULL_CHECK)
)

seeds["strategies"] = (
    config(0, 8192)
    + acquire(size_small(64), strategy=GREEDY)
    + acquire(size_small(128), strategy=fixed(0))  # right after the first slice
    + acquire(size_small(32), strategy=fixed(1))  # occupied
    + acquire(size_small(48), align_log2(7), strategy=fixed(3, 0))  # a free gap, aligned
    + acquire(size_small(16), align_log2(5), strategy=fixed(2, 0, u16(100), round_up=False))
    + acquire(size_small(16), strategy=fixed(5, 0, u32(0x12345678)))
    + acquire(size_small(16), strategy=fixed(6, 3))
    + acquire(size_small(16), strategy=fixed(7, 1, u32(1)))
    + op(DESTROY, 0)
    + acquire(size_small(16), align_log2(9), strategy=GREEDY)
    + acquire(size_medium(4000), strategy=OPTIMAL)
)

seeds["invalid-requests"] = (
    config(0, 4096)
    + acquire(size_zero())
    + acquire(size_huge(0))
    + acquire(size_huge(3))
    + acquire(size_small(16), align_invalid(1))
    + acquire(size_small(16), align_invalid(0))
    + acquire(size_small(16), align_too_big())
    + acquire(size_zero(), align_invalid(2), strategy=fixed(5, 0, u32(3)))
    + acquire_raw(size_huge(1), align_invalid(6))
    + acquire(size_large(1 << 20))
    + acquire(size_small(16), bytes([216]))  # 16 KiB alignment: no room
)

seeds["raw"] = (
    config(0, 16384)
    + acquire_raw(size_small(100))
    + acquire_raw(size_medium(3000), align_log2(12))
    + acquire_raw(size_small(7), align_log2(0), strategy=GREEDY)
    + acquire_raw(size_small(50), strategy=fixed(0))
    + op(RESIZE_RAW, 0) + size_medium(400) + bytes([0])
    + op(RESIZE_RAW, 1) + size_small(10) + bytes([1])
    + op(RELEASE_RAW_OFFSET, 0, 0)
    + op(RELEASE_RAW_OFFSET, 0, 1)
    + op(RELEASE_RAW_POINTER, 0, 1)
    + op(RELEASE_RAW_POINTER, 0, 0)
    + op(FULL_CHECK)
)

seeds["guards"] = (
    config(0, 4096)
    + acquire(size_small(100))
    + acquire(size_small(200))
    + op(GUARD, 0, 0x00)  # exclusive, flag 0
    + op(ACCESS, 0)
    + op(GUARD, 0, 0x01)  # a second guard is refused
    + op(TRY_UNGUARD, 0)  # in use
    + op(RECLAIM, 0)  # in use: handed back
    + op(TRY_RESIZE, 0) + size_small(10)  # in use
    + op(SET_FLAG, 0)  # flag 0 done
    + op(TRY_UNGUARD, 0)
    + op(GUARD, 1, 0x31)  # shared, by value, flag 1
    + op(ACCESS, 1)
    + op(UNGUARD_UNCHECKED, 1)
    + op(UNGUARD_UNCHECKED, 1)
    + op(TRY_UNGUARD, 1)  # not guarded
)

seeds["parking"] = (
    config(0, 1024)
    + acquire(size_small(256))
    + acquire(size_small(256))
    + acquire(size_small(256))
    + op(GUARD, 0, 0x02)
    + op(GUARD, 1, 0x03)
    + op(DESTROY, 0)  # parked (the last slice moves to index 0)
    + op(DESTROY, 1)  # parked
    + op(SET_FLAG, 2)
    + acquire(size_small(256))  # the last free range
    + acquire(size_small(256))  # no room: optimal collects the released one
    + op(COLLECT)
    + op(SET_FLAG, 3)
    + acquire(size_small(256), strategy=GREEDY)  # greedy collects too
    + op(COLLECT)
)

seeds["expansion"] = (
    config(0, None)
    + expand_small(1000)
    + expand_pages(4)
    + expand_small(300)
    + op(INITIALIZE, 1, 1)
    + op(ABANDON, 0)
    + expand_small(500)  # at the end
    + op(INITIALIZE, 1, 0)
    + op(INITIALIZE, 0, 2)
    + acquire(size_small(100))
    + acquire(size_medium(3000), align_log2(12))
    + expand_zero()
    + expand_huge(1)
    + expand_huge(0)
    + op(FULL_CHECK)
)

seeds["offset-space"] = (
    config(1, 512)
    + expand_small(4000)
    + expand_to_end(8192)  # up to 8 KiB before the end of the offset space
    + expand_small(8192)  # the top of the offset space
    + op(INITIALIZE, 2, 0)
    + op(ABANDON, 1)  # leaves a large hole
    + expand_past_end(5)  # goes into the hole
    + op(INITIALIZE, 1, 0)
    + acquire(size_small(16), strategy=fixed(6, 20, round_up=False))
    + acquire(size_small(64), strategy=fixed(6, 200))
    + acquire(size_small(16), strategy=fixed(4, 0))
    + op(FULL_CHECK)
)

seeds["good-fit-off-the-granule"] = (
    config(0, 300)  # the next region starts at offset 300, off the 16-byte granule
    + expand_small(256)
    + op(INITIALIZE, 0, 0)
    + acquire(size_small(256), strategy=GOOD_FIT)  # fits only the first region, aligned
    + op(FULL_CHECK)
)
seeds["initialize-misuse"] = (
    config(0, 2048)
    + expand_small(100)
    + op(INITIALIZE_MISUSE, 0, 0) + u16(0)  # null memory
    + expand_small(200)
    + op(INITIALIZE_MISUSE, 0, 1) + u16(10)  # overlaps the first region
    + expand_small(300)
    + op(INITIALIZE, 0, 0)
)

seeds["raw-misuse"] = (
    config(0, 4096)
    + acquire_raw(size_small(100))
    + acquire(size_small(100))
    + b"".join(op(RAW_MISUSE, kind, 0) + u16(7) for kind in range(7))
    + op(RAW_MISUSE, 0x80, 0) + u16(0)
    + op(RAW_MISUSE, 0x40, 0) + u16(3)
)

seeds["resize"] = (
    config(0, 4096)
    + acquire(size_small(100))
    + acquire(size_small(100))
    + op(TRY_RESIZE, 1) + size_medium(2000)
    + op(TRY_RESIZE, 1) + size_small(30)
    + op(TRY_RESIZE, 0) + size_small(120)
    + op(TRY_RESIZE, 0) + size_medium(300)
    + op(TRY_RESIZE, 0) + size_zero()
    + op(TRY_RESIZE, 0) + size_huge(1)
    + op(DESTROY, 1)
    + op(TRY_RESIZE, 0) + size_medium(4000)
)

seeds["move"] = (
    config(0, 4096)
    + acquire(size_small(100))
    + acquire(size_small(100))
    + acquire(size_small(100))
    + op(MOVE, 0, 0, 0)
    + op(GUARD, 1, 0x00)
    + op(MOVE, 0, 1, 1)  # over a guarded slice: parked
    + op(MOVE, 1, 0, 1)
    + op(COLLECT)
    + op(SET_FLAG, 0)
    + op(COLLECT)
)

seeds["pmr-buffer"] = (
    config(0, 1024)
    + pmr_allocate(pmr_bytes_small(100), pmr_align_log2(3), first=pmr_buffer(3000, 5))
    + pmr_allocate(pmr_bytes_small(200), pmr_align_log2(6))
    + pmr_allocate(pmr_bytes_zero(), pmr_align_log2(0))
    + pmr_allocate(pmr_bytes_u16(5000), pmr_align_log2(12))
    + pmr_allocate(pmr_bytes_u16(30000), pmr_align_log2(4))
    + op(PMR_DEALLOCATE, 1, 0)
    + op(PMR_DEALLOCATE, 0, 1)
    + pmr_allocate(pmr_bytes_small(50), pmr_align_log2(2))
    + op(FULL_CHECK)
    + op(PMR_RELEASE)
    + pmr_allocate(pmr_bytes_small(10), pmr_align_log2(1))
)

seeds["pmr-growth"] = (
    config(0, None)
    + pmr_allocate(pmr_bytes_small(100), pmr_align_log2(4), first=pmr_growth(1000, 1, 2))
    + pmr_allocate(pmr_bytes_u16(20000), pmr_align_log2(9))
    + pmr_allocate(pmr_bytes_u16(60000), pmr_align_log2(12))
    + pmr_allocate(pmr_bytes_small(64), pmr_align_dedicated(0))
    + pmr_allocate(pmr_bytes_u16(1000), pmr_align_dedicated(2))
    + pmr_allocate(pmr_bytes_huge(0), pmr_align_log2(3))  # bad_alloc
    + pmr_allocate(pmr_bytes_huge(3), pmr_align_log2(3))  # the upstream refuses
    + pmr_allocate(pmr_bytes_huge(4), pmr_align_dedicated(1))  # the upstream refuses
    + pmr_allocate(pmr_bytes_small(8), pmr_align_invalid(1))  # misuse
    + op(PMR_DEALLOCATE, 3, 0)
    + op(PMR_DEALLOCATE, 0, 0)
)

seeds["pmr-misuse"] = (
    config(0, 4096)
    + acquire(size_small(100))
    + pmr_allocate(pmr_bytes_small(100), pmr_align_log2(4), first=pmr_buffer(8000, 0))
    + pmr_allocate(pmr_bytes_small(60), pmr_align_dedicated(0))
    + pmr_allocate(pmr_bytes_small(30), pmr_align_log2(3))
    + b"".join(op(PMR_MISUSE, kind, 0, 4) for kind in range(6))
    + op(PMR_MISUSE, 0x81, 1, 9)
    + op(PMR_MISUSE, 2, 1, 2)
    + op(PMR_MISUSE, 3, 1, 13)
    + op(PMR_MISUSE, 4, 1, 13)
)

seeds["pmr-unsynchronized"] = (
    config(2, 4096)
    + pmr_allocate(pmr_bytes_small(1), pmr_align_log2(0), first=pmr_growth(1, 3, 0, False))
    + b"".join(pmr_allocate(pmr_bytes_small(n), pmr_align_log2(n % 9)) for n in (5, 17, 130, 255))
    + op(PMR_DEALLOCATE, 2, 0)
    + pmr_allocate(pmr_bytes_u16(4096), pmr_align_log2(12))
    + op(PMR_RELEASE)
)

# One mixed run per option set: slices, raw ranges, resizes and guards under each.
for option_set in range(1, 7):
    seeds[f"options-{option_set}"] = (
        config(option_set, 2000 + 300 * option_set)
        + acquire(size_small(1), align_log2(0))
        + acquire(size_small(99), align_log2(3), strategy=GREEDY)
        + acquire_raw(size_small(150), align_log2(6))
        + acquire(size_medium(400), align_log2(13))
        + acquire(size_small(17), strategy=fixed(0))
        + op(TRY_RESIZE, 0) + size_small(250)
        + op(RESIZE_RAW, 0) + size_medium(350) + bytes([0])
        + op(GUARD, 1, 0x10)
        + op(DESTROY, 1)
        + acquire(size_medium(1500))
        + op(SET_FLAG, 0)
        + op(FULL_CHECK)
    )


# ---- Slot sessions (slot_session.hpp): byte 0 with bit 6 set ------------------------------

SLOT_ACQUIRE, SLOT_RELEASE, SLOT_MISUSE, SLOT_THREAD_EXITS, SLOT_CHECK = 0, 3, 5, 6, 7


def slot_config(min_alignment_choice=0, thread_caches=True, pages=16):
    """min_alignment 8, 16, 1 or 64 (choice 0..3); the region is 16 + `pages` pages of 4 KiB."""
    return bytes([0x40 | (0x20 if thread_caches else 0) | min_alignment_choice, pages])


def slot_acquire(thread, size, align_log2=3, good_fit=False):  # size 1..2048
    return bytes([SLOT_ACQUIRE, thread]) + u16(size - 1) + bytes([align_log2 | (0x80 if good_fit else 0)])


def slot_release(which, thread, mode):  # mode: pointer, pointer+size, offset, offset+size
    return bytes([SLOT_RELEASE, which, thread, mode])


# Blocks taken on each thread and released on the others, by pointer and by offset; a thread
# exits holding blocks that another then releases; every misuse once.
seeds["slots-across-threads"] = (
    slot_config(0, True)
    + b"".join(slot_acquire(t, 24 + 40 * t) for t in (0, 1, 2, 1, 2, 0))
    + slot_acquire(1, 1500, 6)
    + slot_acquire(2, 100, 4, good_fit=True)
    + slot_release(0, 1, 0)
    + slot_release(0, 2, 2)
    + bytes([SLOT_THREAD_EXITS, 0])
    + slot_release(1, 0, 1)
    + slot_release(0, 2, 3)
    + b"".join(bytes([SLOT_MISUSE, kind, 0, kind]) for kind in range(3))
    + bytes([SLOT_CHECK, 1])
    + b"".join(slot_acquire(t % 3, 8 + t) for t in range(12))
    + bytes([SLOT_THREAD_EXITS, 1])
    + bytes([SLOT_CHECK, 2])
)

seeds["slots-one-lock"] = (
    slot_config(2, False, 4)
    + b"".join(slot_acquire(t % 3, 1 + 7 * t, t % 8) for t in range(16))
    + b"".join(slot_release(k, k % 3, k % 4) for k in range(0, 8))
    + bytes([SLOT_MISUSE, 1, 2, 1])
    + bytes([SLOT_CHECK, 3])
)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main()
