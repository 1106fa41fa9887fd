package vmgate

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Of n slots, n are given at once and the next waits until one is given back, also
// between processes (flock: a lock of another open file description, as another test
// binary's would be).
func TestHostSlotsBoundTheGuests(t *testing.T) {
	dir := t.TempDir()
	a, err := acquireSlot(dir, 2, 10*time.Millisecond)
	require.NoError(t, err)
	b, err := acquireSlot(dir, 2, 10*time.Millisecond)
	require.NoError(t, err)
	defer b.Close()
	got := make(chan *os.File, 1)
	go func() {
		c, err := acquireSlot(dir, 2, 10*time.Millisecond)
		if err == nil {
			got <- c
		}
	}()
	select {
	case c := <-got:
		c.Close()
		t.Fatal("a third slot of two was given")
	case <-time.After(300 * time.Millisecond):
	}
	require.NoError(t, a.Close())
	select {
	case c := <-got:
		require.NoError(t, c.Close())
	case <-time.After(5 * time.Second):
		t.Fatal("the slot given back was not taken by the waiter")
	}
}

// A test takes one slot however many times it asks, and gives it back when it ends.
func TestHostSlotOncePerTest(t *testing.T) {
	dir, n := slotDir, HostSlots
	slotDir, HostSlots = t.TempDir(), 2
	t.Cleanup(func() { slotDir, HostSlots = dir, n })
	free := func() bool { // one of the two is free
		f, err := tryAcquireSlot(slotDir, 2)
		require.NoError(t, err)
		if f == nil {
			return false
		}
		return f.Close() == nil
	}
	t.Run("asks twice", func(t *testing.T) {
		HostSlot(t)
		HostSlot(t)
		require.True(t, HoldsHostSlot(t))
		require.True(t, free(), "the second ask took no second slot")
	})
	require.True(t, free(), "the test's slot was given back when it ended")
}
