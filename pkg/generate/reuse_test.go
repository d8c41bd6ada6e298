package generate

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/talforge/talforge/pkg/gitops"
	"github.com/talforge/talforge/pkg/profile"
	"github.com/talforge/talforge/pkg/version"
)

func TestUnchangedRunIsProvenWithoutRendering(t *testing.T) {
	dir, path := project(t, homelab)

	if res := run(t, path); res.Rendered == nil {
		t.Fatal("the first run did not render")
	}

	before := snapshot(t, dir)

	reused := run(t, path)
	if reused.Rendered != nil || reused.Configs != nil {
		t.Fatal("a run with the inputs of the last one rendered every node")
	}

	assertSnapshot(t, dir, before)

	rendered, err := Run(context.Background(), Options{Profile: path, Render: true})
	if err != nil {
		t.Fatal(err)
	}

	if rendered.Rendered == nil {
		t.Fatal("Options.Render did not render")
	}

	assertSnapshot(t, dir, before)

	// What a proven run reports is what a rendering run reports.
	if !reflect.DeepEqual(reused.Files, rendered.Files) {
		t.Errorf("files reported without rendering %+v\nwith rendering                   %+v", reused.Files, rendered.Files)
	}

	if reused.Schematic != rendered.Schematic || reused.Schematic == "" {
		t.Errorf("schematic %q, rendering run %q", reused.Schematic, rendered.Schematic)
	}

	if reused.Lock.ProfileDigest != rendered.Lock.ProfileDigest || !reflect.DeepEqual(reused.Lock.Files, rendered.Lock.Files) {
		t.Error("the lock reported without rendering is not the one a rendering run makes")
	}
}

func assertSnapshot(t *testing.T, dir string, before map[string]string) {
	t.Helper()

	after := snapshot(t, dir)
	for f := range before {
		if strings.HasPrefix(f, "cache/") {
			continue
		}

		if before[f] != after[f] {
			t.Errorf("%s changed (bytes or mtime) on a no-change run", f)
		}
	}
}

// Every input of the rendered files ends the reuse: the run renders again and writes what
// changed.
func TestReuseEndsWithAnyInput(t *testing.T) {
	extra := func(*profile.Cluster) ([]gitops.File, error) {
		return []gitops.File{{Path: "extra.yaml", Data: []byte("extra: true\n")}}, nil
	}

	cases := []struct {
		name      string
		change    func(t *testing.T, dir, out string)
		renderers []Renderer
		moveTo    string   // the same profile under another name in profiles/
		written   []string // at least these are rewritten
	}{
		{name: "a patch edited", change: func(t *testing.T, dir, _ string) {
			mustWrite(t, filepath.Join(dir, "patches", "common.yaml"), "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [pool.ntp.org]\n")
		}, written: []string{"nodes/cp-1.yaml.enc", "nodes/w-2.yaml.enc", RedactedFile, LockFile}},
		{name: "a node file replaced", change: func(t *testing.T, _, out string) {
			mustWrite(t, filepath.Join(out, NodeConfigFile("w-1")), "not: this\n")
		}, written: []string{"nodes/w-1.yaml.enc"}},
		{name: "the lockfile edited", change: func(t *testing.T, _, out string) {
			data, _ := os.ReadFile(filepath.Join(out, LockFile))
			mustWrite(t, filepath.Join(out, LockFile), string(data)+"# edited\n")
		}, written: []string{LockFile}},
		{name: "the talosconfig due for renewal", change: func(t *testing.T, _, out string) {
			editRecord(t, out, func(r *reuseRecord) { r.RenewAt = time.Now().Add(-time.Minute) })
		}},
		{name: "another talforge", change: func(t *testing.T, _, _ string) {
			old := version.Version
			version.Version = old + "+other"

			t.Cleanup(func() { version.Version = old })
		}},
		{name: "the profile moved", moveTo: "lab.yaml", written: []string{LockFile}}, // the lockfile names it
		{name: "another renderer", renderers: []Renderer{extra}, written: []string{"extra.yaml", LockFile}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, path := project(t, homelab)
			out := filepath.Join(dir, "clusters", "home")

			run(t, path)

			if tc.change != nil {
				tc.change(t, dir, out)
			}

			if tc.moveTo != "" {
				data, _ := os.ReadFile(path)
				path = filepath.Join(dir, "profiles", tc.moveTo)
				mustWrite(t, path, string(data))
			}

			res, err := Run(context.Background(), Options{Profile: path, Renderers: tc.renderers})
			if err != nil {
				t.Fatal(err)
			}

			if res.Rendered == nil {
				t.Fatal("the run did not render")
			}

			for _, f := range tc.written {
				if !slices.Contains(res.Files.Written, f) {
					t.Errorf("%s was not written again (written: %v)", f, res.Files.Written)
				}
			}

			// And the next run is proven again.
			if again := run(t, path); again.Rendered != nil && tc.renderers == nil {
				t.Error("the run after the change rendered again")
			}
		})
	}
}

func editRecord(t *testing.T, out string, edit func(*reuseRecord)) {
	t.Helper()

	path := reuseRecordPath(out)

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	var rec reuseRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}

	edit(&rec)

	if data, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}

	mustWrite(t, path, string(data))
}
