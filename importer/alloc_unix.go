//go:build unix

package importer

import (
	"syscall"
	"unsafe"
)

// allocSlots maps anonymous memory for n slots outside the Go heap (see
// seenSet for why). The pages are zero, which is what an empty slot is,
// and the kernel only backs the ones touched.
func allocSlots(n int) (keys []uint64, vals []uint32, free func()) {
	b, err := syscall.Mmap(-1, 0, 12*n, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or a sandbox that refuses mmap: the heap
		// works too, only with a higher peak.
		return heapSlots(n)
	}
	keys = unsafe.Slice((*uint64)(unsafe.Pointer(&b[0])), n)
	vals = unsafe.Slice((*uint32)(unsafe.Pointer(&b[8*n])), n)
	return keys, vals, func() { _ = syscall.Munmap(b) }
}
