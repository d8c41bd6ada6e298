// A run that can prove its output current without rendering: what makes a no-change run of a
// large cluster fast, since rendering and validating every node's config is most of its cost.

package generate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/talforge/talforge/pkg/atomicfile"
	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/machineconfig"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/schematic"
	"github.com/talforge/talforge/pkg/secrets"
	"github.com/talforge/talforge/pkg/version"
)

// reuseRecord is what a run that rendered remembers on this machine, outside the output (which
// stays byte-identical and free of anything machine-specific): the digest of every input its
// files depend on, the digest of the lockfile it wrote, and when the talosconfig's client
// certificate comes due for renewal, the one input that is the clock.
type reuseRecord struct {
	Inputs  string    `json:"inputs"`
	Lock    string    `json:"lock"`
	RenewAt time.Time `json:"renewAt"`
}

// reuseInputs digests what the rendered files depend on besides the clock: the executable
// (talforge's own rendering and redaction), the profile (path and content) and its patches,
// the secrets bundle as stored, the output directory and the SOPS configuration named on the
// command line. "" means the run cannot be proven current and renders.
func reuseInputs(c *profile.Cluster, profileDigest, out, sopsConfig string) string {
	exe := version.Executable()
	if exe == "" {
		return ""
	}

	bundle := fileDigest(filepath.Join(out, secrets.FileName))
	if bundle == "" || bundle == "unreadable" {
		return ""
	}

	abs, err := filepath.Abs(out)
	if err != nil {
		return ""
	}

	// The profile's path too: the lockfile names it.
	return digest(fmt.Appendf(nil, "exe %q\nprofile %q %s\nbundle %s\nout %q\nsops-config %q\n", exe, c.File(), profileDigest, bundle, abs, sopsConfig))
}

// reuseRecordPath is where the record of out lives: the user's cache directory, keyed by the
// output directory's absolute path ("" when there is none).
func reuseRecordPath(out string) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}

	abs, err := filepath.Abs(out)
	if err != nil {
		return ""
	}

	sum := sha256.Sum256([]byte(abs))

	return filepath.Join(cache, "talforge", "generate", hex.EncodeToString(sum[:16])+".json")
}

func loadReuseRecord(out string) *reuseRecord {
	path := reuseRecordPath(out)
	if path == "" {
		return nil
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}

	var rec reuseRecord
	if json.Unmarshal(data, &rec) != nil || rec.Inputs == "" {
		return nil
	}

	return &rec
}

// remember records a run that wrote (or confirmed) out's files: its inputs, the digest of its
// lockfile and when its talosconfig comes due. It is only a cache: when it cannot be written
// the next run renders, so errors are dropped.
func remember(out, inputs, lockDigest string, renewAt time.Time) {
	path := reuseRecordPath(out)
	if path == "" || inputs == "" {
		return
	}

	data, err := json.Marshal(reuseRecord{Inputs: inputs, Lock: lockDigest, RenewAt: renewAt})
	if err != nil {
		return
	}

	_ = atomicfile.Write(path, data, 0o600) // a cache: see above
}

// renewAt is when the talosconfig's certificate comes due for renewal (now when it cannot
// be read: then the next run renders).
func renewAt(talosconfig []byte) time.Time {
	exp, err := machineconfig.TalosconfigExpiry(talosconfig)
	if err != nil {
		return time.Now()
	}

	return exp.Add(-machineconfig.RenewBefore)
}

// provenCurrent reports whether out holds exactly what rendering would write: the inputs
// are those the record names, the lockfile is the one that run wrote, every file the lockfile
// lists is on disk as written and no other file would be (the shared files that need no
// rendering are compared byte for byte), and the talosconfig is not due for renewal. The
// encryption rule is compared by the caller, once it has the project's SOPS configuration.
func provenCurrent(c *profile.Cluster, out string, old *Lock, rec *reuseRecord, inputs string, img *schematic.Image, renderers []Renderer) bool {
	if rec == nil || old == nil || inputs == "" || rec.Inputs != inputs || !time.Now().Before(rec.RenewAt) {
		return false
	}

	if fileDigest(filepath.Join(out, LockFile)) != rec.Lock || !old.intact() {
		return false
	}

	shared, err := sharedFiles(c, img, nil, renderers)
	if err != nil {
		return false
	}

	want := map[string]bool{TalosconfigFile: true, RedactedFile: true}

	for _, n := range c.Nodes {
		want[NodeConfigFile(n.Name)] = true
	}

	for _, f := range shared {
		if f.Path == TalosconfigFile {
			continue
		}

		if f.Secret || old.Files[f.Path] != digest(f.Data) {
			return false
		}

		want[f.Path] = true
	}

	return maps.EqualFunc(want, old.Files, func(bool, string) bool { return true })
}

// intact reports whether every file the lock lists was found on disk as written (see
// differing, which openOutput starts and pendingLock.get waits for).
func (l *Lock) intact() bool {
	if l.verified == nil {
		return false
	}

	for p := range l.Files {
		if !l.verified[p] {
			return false
		}
	}

	return true
}

// unchangedResult is the file list of a run that changed nothing, in the order a rendering
// run reports it.
func unchangedResult(old *Lock) *gitops.Result {
	files := append(slices.Collect(maps.Keys(old.Files)), LockFile)
	slices.Sort(files)

	return &gitops.Result{Unchanged: files}
}
