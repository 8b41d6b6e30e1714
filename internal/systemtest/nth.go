package systemtest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/internal/poll"
)

// Nth waits until *items, which mu guards, holds its n-th item (from 0),
// as a fake server records what it receives, and returns that item.
func Nth[T any](t testing.TB, what string, mu *sync.Mutex, items *[]T, n int) T {
	t.Helper()
	var got T
	poll.Until(t, fmt.Sprintf("%s #%d", what, n+1), func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(*items) <= n {
			return fmt.Errorf("%d so far", len(*items))
		}
		got = (*items)[n]
		return nil
	})
	return got
}
