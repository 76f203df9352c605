package ghost

import (
	"math/rand/v2"
	"sync/atomic"
)

// counter is a count that many goroutines add to at once. It is split into
// cells on cache lines of their own, and each Add goes to a cell picked at
// random, so that cores counting at the same moment rarely write the same
// line; Load sums the cells.
type counter struct {
	cells [counterCells]paddedUint64
}

// counterCells is a power of two, larger than the cores that usually
// count at once.
const counterCells = 16

type paddedUint64 struct {
	atomic.Uint64
	_ [56]byte
}

// cell returns a cell index for one Add: runtime's per-thread random
// source, which no two threads share.
func cell() uint32 { return rand.Uint32() & (counterCells - 1) }

// Add adds d.
func (c *counter) Add(d uint64) { c.cells[cell()].Add(d) }

// Load returns the count. Adds made meanwhile may or may not be in it.
func (c *counter) Load() uint64 {
	var sum uint64
	for i := range c.cells {
		sum += c.cells[i].Load()
	}
	return sum
}
