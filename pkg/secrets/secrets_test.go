package secrets

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config"
)

func TestCreateNeverReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusters", "c", FileName)

	if err := Create(path, []byte("first")); err != nil {
		t.Fatal(err)
	}

	err := Create(path, []byte("second"))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}

	if got, _ := os.ReadFile(path); !bytes.Equal(got, []byte("first")) {
		t.Errorf("the bundle was replaced: %q", got)
	}

	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	vc, err := config.ParseContractFromVersion("v1.14.1")
	if err != nil {
		t.Fatal(err)
	}

	b, err := New(vc)
	if err != nil {
		t.Fatal(err)
	}

	data, err := Marshal(b)
	if err != nil {
		t.Fatal(err)
	}

	// talosctl gen secrets format: lower-case top-level keys.
	for _, key := range []string{"cluster:", "secrets:", "trustdinfo:", "certs:"} {
		if !bytes.Contains(data, []byte("\n"+key)) && !bytes.HasPrefix(data, []byte(key)) {
			t.Errorf("bundle lacks %s", key)
		}
	}

	back, err := Parse("bundle", data)
	if err != nil {
		t.Fatal(err)
	}

	if err := back.Validate(vc); err != nil {
		t.Fatal(err)
	}

	again, _ := Marshal(back)
	if !bytes.Equal(data, again) {
		t.Error("marshal → parse → marshal is not stable")
	}

	if _, err := Parse("bundle", append(data, []byte("unknown: 1\n")...)); err == nil {
		t.Error("an unknown key in a bundle was accepted")
	}
}
