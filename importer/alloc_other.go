//go:build !unix

package importer

func allocSlots(n int) (keys []uint64, vals []uint32, free func()) { return heapSlots(n) }
