package probe

import (
	"context"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	late, early, stopped := c.NewTimer(3*time.Second), c.NewTimer(time.Second), c.NewTimer(2*time.Second)
	if got := c.Waiters(); len(got) != 3 || !got[0].Equal(t0.Add(time.Second)) {
		t.Fatalf("Waiters() = %v, want 3, earliest at t0+1s", got)
	}
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop: want true once, then false")
	}
	fired := func(tm Timer) bool {
		select {
		case <-tm.C():
			return true
		default:
			return false
		}
	}

	c.Step(999 * time.Millisecond)
	if fired(early) || fired(late) {
		t.Fatal("a timer fired before its deadline")
	}
	c.Step(time.Millisecond)
	if !fired(early) || fired(late) {
		t.Fatal("at t0+1s: want exactly the 1 s timer fired")
	}
	c.Step(time.Hour)
	if !fired(late) || fired(stopped) {
		t.Fatal("an hour later: want the 3 s timer fired and the stopped one not")
	}
	if !c.Now().Equal(t0.Add(time.Hour + time.Second)) {
		t.Errorf("Now() = %v", c.Now())
	}
	if !fired(c.NewTimer(0)) {
		t.Error("a timer of 0 did not fire at once")
	}

	// BlockUntil wakes up when a timer is added.
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	added := make(chan Timer)
	go func() { added <- c.NewTimer(time.Minute) }()
	if err := c.BlockUntil(ctx, 1); err != nil {
		t.Fatalf("BlockUntil(1): %v", err)
	}
	(<-added).Stop()
	if err := c.BlockUntil(ctx, 0); err != nil {
		t.Fatalf("BlockUntil(0) after Stop: %v", err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := c.BlockUntil(short, 5); err == nil {
		t.Error("BlockUntil returned nil for a count never reached on a canceled context")
	}
}

func TestRealClock(t *testing.T) {
	var c Clock = RealClock{}
	tm := c.NewTimer(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(guard):
		t.Fatal("a 1 ms real timer did not fire")
	}
	if tm.Stop() {
		t.Error("Stop of a fired timer reported true")
	}
}
