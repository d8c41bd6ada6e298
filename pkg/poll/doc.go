// Package poll is talforge's one wait loop: it calls a check until the check reports done,
// fails, the timeout passes or the context ends, and it says what it waits for while it
// waits (talforge issue 11: every wait longer than a few seconds prints a line when it
// starts and at least every 15 s, with what it waits for and the elapsed time).
//
// The loop is apimachinery's wait.BackoffUntilWithContext, the one exported loop of
// k8s.io/apimachinery/pkg/util/wait whose timers come from an injected k8s.io/utils/clock
// clock. Elapsed time and the timeout are read from that clock too, so a test drives a wait
// with a fake clock (k8s.io/utils/clock/testing) instead of sleeping.
//
// Errors name what was waited for and the last status the check gave: a timeout wraps
// ErrTimeout (as a *TimeoutError), the end of the context wraps ctx.Err(), and a check's own
// error is returned wrapped with what was waited for.
package poll
