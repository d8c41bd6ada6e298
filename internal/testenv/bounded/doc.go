// Package bounded runs a piece of a test in a child process under a wall-time and memory
// bound, so that a test of hostile input can assert "refused within 5 s and 256 MiB" and
// still end, quickly and without exhausting the machine, when the code under test does not
// stop: the child watches its own heap and exits as soon as it passes the bound, and the
// parent kills it at the deadline.
//
// The child is the test binary itself, re-executed with -test.run naming a test that calls
// [Child]; [Run] starts it and reports what the child's function returned together with its
// wall time, peak heap in use and total allocation (runtime.ReadMemStats).
package bounded
