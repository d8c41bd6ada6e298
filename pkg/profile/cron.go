package profile

import (
	"fmt"
	"strconv"
	"strings"
)

// cronFields are the five fields of a standard cron expression, as Longhorn parses them
// (robfig/cron v3 standard parser).
var cronFields = []struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 6, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// validateCron checks a 5-field cron expression (minute hour day-of-month month day-of-week)
// with *, ranges, steps, lists and month/weekday names.
func validateCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("%q has %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(fields))
	}

	for i, f := range fields {
		spec := cronFields[i]
		for _, part := range strings.Split(f, ",") {
			if err := validateCronPart(part, spec.min, spec.max, spec.names); err != nil {
				return fmt.Errorf("%s field %q: %w", spec.name, f, err)
			}
		}
	}

	return nil
}

func validateCronPart(part string, lo, hi int, names []string) error {
	rng, step, hasStep := strings.Cut(part, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n < 1 {
			return fmt.Errorf("step %q must be a positive number", step)
		}
	}

	if rng == "*" || rng == "?" {
		return nil
	}

	from, to, isRange := strings.Cut(rng, "-")

	a, err := cronValue(from, lo, hi, names)
	if err != nil {
		return err
	}

	if !isRange {
		return nil
	}

	b, err := cronValue(to, lo, hi, names)
	if err != nil {
		return err
	}

	if a > b {
		return fmt.Errorf("range %q runs backwards", rng)
	}

	return nil
}

func cronValue(s string, lo, hi int, names []string) (int, error) {
	for i, name := range names {
		if strings.EqualFold(s, name) {
			return lo + i, nil
		}
	}

	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}

	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
	}

	return n, nil
}
