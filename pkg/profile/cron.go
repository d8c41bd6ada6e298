package profile

import (
	"fmt"
	"regexp"
	"strings"
	"sync"

	"github.com/robfig/cron/v3"
)

// Longhorn checks RecurringJob.spec.cron with robfig/cron's ParseStandard (longhorn-manager
// datastore/longhorn.go ValidateRecurringJob, robfig/cron v1.2.0 there, whose field grammar v3
// keeps) and runs it as a Kubernetes CronJob schedule (robfig/cron/v3 ParseStandard). talforge
// parses with the same library and fields but, unlike ParseStandard, without descriptors
// (@daily, @every 1h): a profile writes the five fields (types.go documents cron so).
const cronFieldsParsed = cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow

// cronFields names the five fields and their bounds (robfig/cron/v3 spec.go minutes … dow)
// for messages only: robfig decides what is valid, but its errors name neither the field nor
// both bounds.
var cronFields = [...]struct {
	name   string
	lo, hi int
}{
	{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 6},
}

// robfigOutOfRange matches robfig/cron/v3 parser.go getRange's bound errors, "beginning of
// range (0) below minimum (1): 0" and "end of range (61) above maximum (59): 61".
// Compiled on first use, not at package initialisation, to keep start-up cheap (issue 16).
var robfigOutOfRange = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(?:beginning|end) of range \((-?\d+)\) (?:below minimum|above maximum) `)
})

// validateCron checks a 5-field cron expression (minute hour day-of-month month day-of-week)
// the way Longhorn parses it: *, ?, ranges, steps, lists and month/weekday names.
func validateCron(expr string) error {
	fields := strings.Fields(expr) // robfig splits the same way
	if len(fields) != len(cronFields) {
		return fmt.Errorf("%q has %d fields, want 5 (minute hour day-of-month month day-of-week)", expr, len(fields))
	}

	// robfig/cron v3 takes a time-zone prefix; Longhorn's v1 parser has none and Kubernetes
	// refuses one in a CronJob schedule.
	if strings.HasPrefix(fields[0], "TZ=") || strings.HasPrefix(fields[0], "CRON_TZ=") {
		return fmt.Errorf("%q: Longhorn's cron parser takes no time-zone prefix", expr)
	}

	parser := cron.NewParser(cronFieldsParsed)

	_, err := parser.Parse(expr)
	if err == nil {
		return nil
	}

	// Find the field robfig refuses by parsing each alone, the others "*".
	for i, f := range fields {
		alone := []string{"*", "*", "*", "*", "*"}
		alone[i] = f

		if _, ferr := parser.Parse(strings.Join(alone, " ")); ferr != nil {
			spec := cronFields[i]
			reason := ferr.Error()

			if m := robfigOutOfRange().FindStringSubmatch(reason); m != nil {
				reason = fmt.Sprintf("%s is outside %d-%d", m[1], spec.lo, spec.hi)
			}

			return fmt.Errorf("%s field %q: %s", spec.name, f, reason)
		}
	}

	return fmt.Errorf("%q: %w", expr, err)
}
