package longhorn

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is what `talforge longhorn status` shows.
type Status struct {
	Installed      bool
	ChartVersion   string
	Revision       int
	ReleaseStatus  string
	Updated        time.Time
	ProfileVersion string
	// DeletingConfirmationFlag is Longhorn's setting ("" when it cannot be read).
	DeletingConfirmationFlag string
	BackupTarget             BackupTargetStatus
	Health                   *Health
}

// Status reads the release, the safety flag, the backup target and the health gates.
func (cl *Client) Status(ctx context.Context) (*Status, error) {
	st := &Status{ProfileVersion: cl.cluster.Longhorn.Version}
	rel, err := cl.helm.lastRelease()
	if err != nil {
		return nil, err
	}
	if rel != nil {
		st.Installed = true
		st.ChartVersion = rel.Chart.Metadata.Version
		st.Revision = rel.Version
		st.ReleaseStatus = rel.Info.Status.String()
		st.Updated = rel.Info.LastDeployed.Time
	}
	if st.DeletingConfirmationFlag, _, err = cl.setting(ctx, settingDeletingConfirmationFlag); err != nil {
		return nil, err
	}
	if st.BackupTarget, err = cl.backupTarget(ctx); err != nil {
		return nil, err
	}
	if st.Health, err = cl.health(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// Write prints the status for people.
func (s *Status) Write(w io.Writer) {
	if !s.Installed {
		fmt.Fprintf(w, "Longhorn:        not installed (profile: %s)\n", s.ProfileVersion)
		return
	}
	fmt.Fprintf(w, "Longhorn:        %s (Helm revision %d, %s, %s)\n", s.ChartVersion, s.Revision, s.ReleaseStatus, s.Updated.UTC().Format(time.RFC3339))
	if s.ProfileVersion != s.ChartVersion {
		fmt.Fprintf(w, "Profile version: %s (run `talforge longhorn upgrade --to %s`)\n", s.ProfileVersion, s.ProfileVersion)
	}
	mv := s.Health.ManagerVersion
	if mv == "" {
		mv = "unknown"
	}
	fmt.Fprintf(w, "Manager:         %s\n", mv)
	flag := s.DeletingConfirmationFlag
	switch flag {
	case "true":
		flag = `"true"  DANGER: an uninstall would delete every volume; talforge refuses to run`
	case "":
		flag = "unknown"
	}
	fmt.Fprintf(w, "Deleting flag:   %s\n", flag)
	bt := s.BackupTarget
	switch {
	case !bt.Exists:
		fmt.Fprintf(w, "Backup target:   none\n")
	case bt.Available:
		fmt.Fprintf(w, "Backup target:   %s available\n", bt.URL)
	default:
		fmt.Fprintf(w, "Backup target:   %s UNAVAILABLE: %s\n", bt.URL, bt.Message)
	}
	h := s.Health
	line := func(label string, items []string) {
		if len(items) == 0 {
			fmt.Fprintf(w, "%-17snone\n", label)
			return
		}
		fmt.Fprintf(w, "%-17s%s\n", label, strings.Join(items, ", "))
	}
	line("Not rolled out:", h.NotReady)
	line("Unhealthy:", h.Unhealthy)
	line("Rebuilding:", h.Rebuilding)
}
