package generate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/redact"
)

// TestOldRedactedViewIsRewritten: a view written by an earlier redaction (machinery's list of
// secret fields only, which showed secrets added by patches) is rewritten by the next run even
// though no node changed and the lockfile vouches for the file.
func TestOldRedactedViewIsRewritten(t *testing.T) {
	dir, path := project(t, homelab)
	out := filepath.Join(dir, "clusters", "home")
	viewPath := filepath.Join(out, RedactedFile)

	run(t, path)

	view, err := os.ReadFile(viewPath)
	if err != nil {
		t.Fatal(err)
	}

	if !strings.HasPrefix(string(view), redactedHeader()) {
		t.Fatalf("the view does not start with the redaction header:\n%.200s", view)
	}

	// The view as the previous talforge wrote it, recorded in the lockfile as written.
	_, rest, _ := strings.Cut(string(view), "\n")
	old := "# Machine configs of every node, secrets shown as ******: for review only, do not apply.\n" + rest

	if err := os.WriteFile(viewPath, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}

	lock := readLock(filepath.Join(out, LockFile))
	if lock == nil {
		t.Fatal("no lockfile")
	}

	lock.Files[RedactedFile] = digest([]byte(old))

	data, err := lock.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(out, LockFile), data, 0o644); err != nil {
		t.Fatal(err)
	}

	res := run(t, path)

	if !slices.Contains(res.Files.Written, RedactedFile) {
		t.Errorf("the old view was kept; written: %v", res.Files.Written)
	}

	for _, f := range res.Files.Written {
		if strings.HasPrefix(f, NodesDir+"/") {
			t.Errorf("%s was rewritten: only the view is out of date", f)
		}
	}

	if now, _ := os.ReadFile(viewPath); string(now) != string(view) {
		t.Error("the rewritten view differs from the one the first run wrote")
	}
}

// TestRedactedViewIsEveryNodesRedaction: the view, which redacts each distinct document once,
// is byte for byte the view made by redacting every node's whole config on its own (as
// generate did before nodes shared their documents' redaction), for a cluster of 120 nodes
// whose workers share their v1alpha1 document.
func TestRedactedViewIsEveryNodesRedaction(t *testing.T) {
	dir := t.TempDir()
	path := writeBigProfile(t, dir, 120)

	c, err := profile.Load(path)
	if err != nil {
		t.Fatal(err)
	}

	r, err := RenderThrowaway(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}

	got, err := redactedView(context.Background(), r.Configs)
	if err != nil {
		t.Fatal(err)
	}

	var want strings.Builder

	want.WriteString(redactedHeader())
	want.WriteString("# The configs talforge applies are nodes/<node>.yaml.enc, encrypted whole: sops -d nodes/<node>.yaml.enc\n")

	for _, cfg := range r.Configs {
		part, err := redact.YAML(cfg.Bytes)
		if err != nil {
			t.Fatal(err)
		}

		fmt.Fprintf(&want, "---\n# node %s (%s, %s)\n", cfg.Node.Name, cfg.Node.Role, cfg.Node.IP)
		want.Write(part)
	}

	if string(got) != want.String() {
		t.Fatal("the view differs from every node's own redaction")
	}

	if !strings.Contains(string(got), "# node n119 (worker, 10.0.10.121)") {
		t.Error("the view lacks the last node")
	}
}
