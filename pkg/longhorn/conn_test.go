package longhorn

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/talforge/talforge/pkg/poll"
)

// TestConnWaitUsesItsClockAndLog checks the wiring Client and pkg/restore rely on: Poll is the
// pause, Clock measures it and the timeout, Log gets the progress lines. No real time passes.
func TestConnWaitUsesItsClockAndLog(t *testing.T) {
	fc := clocktesting.NewFakeClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var log bytes.Buffer
	c, err := NewConn(&rest.Config{Host: "https://127.0.0.1:1"}, ConnOptions{Poll: 10 * time.Second, Clock: fc, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Now().Equal(fc.Now()) {
		t.Errorf("Now = %s, want the clock's %s", c.Now(), fc.Now())
	}
	errc := make(chan error, 1)
	go func() {
		errc <- c.Wait(t.Context(), time.Minute, "volume pvc-1: restore", func(context.Context) (bool, string, error) {
			return false, "restoring (volume attached)", nil
		})
	}()
	var werr error
	for stop := time.Now().Add(10 * time.Second); werr == nil; {
		select {
		case werr = <-errc:
			continue
		default:
		}
		if time.Now().After(stop) {
			t.Fatal("Wait did not return")
		}
		if fc.HasWaiters() {
			fc.Step(10 * time.Second)
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
	if !errors.Is(werr, poll.ErrTimeout) || werr.Error() != "volume pvc-1: restore: not done after 1m0s: restoring (volume attached)" {
		t.Errorf("err = %v", werr)
	}
	want := "waiting for volume pvc-1: restore: restoring (volume attached)\n" +
		"still waiting for volume pvc-1: restore after 20s: restoring (volume attached)\n" +
		"still waiting for volume pvc-1: restore after 40s: restoring (volume attached)\n" +
		"still waiting for volume pvc-1: restore after 1m0s: restoring (volume attached)\n" +
		"gave up waiting for volume pvc-1: restore after 1m0s\n"
	if log.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", log.String(), want)
	}
}
