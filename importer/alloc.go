package importer

// heapSlots allocates n slots on the Go heap, where mapping memory outside
// it is not available.
func heapSlots(n int) (keys []uint64, vals []uint32, free func()) {
	return make([]uint64, n), make([]uint32, n), func() {}
}
