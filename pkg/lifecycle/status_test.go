package lifecycle_test

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"

	"github.com/siderolabs/crypto/x509"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"

	"github.com/talforge/talforge/pkg/generate"
	"github.com/talforge/talforge/pkg/lifecycle"
	"github.com/talforge/talforge/pkg/sopsfile"
)

// TestStatusNamesATalosconfigThatCannotDial: a stored talosconfig whose key is not its
// certificate's is one problem that names the context, and every node's Talos state is
// unknown, instead of a TLS error per node.
func TestStatusNamesATalosconfigThatCannotDial(t *testing.T) {
	l := newLab(t)
	opts := l.options()
	if _, err := generate.Run(t.Context(), generate.Options{Profile: opts.Profile, Renderers: opts.Renderers}); err != nil {
		t.Fatalf("generate: %v", err)
	}

	path := filepath.Join(l.outDir(), "talosconfig.sops.yaml")
	plain, err := sopsfile.DecryptFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := clientconfig.FromBytes(plain)
	if err != nil {
		t.Fatal(err)
	}
	other, err := x509.NewEd25519Key()
	if err != nil {
		t.Fatal(err)
	}
	tc.Contexts[tc.Context].Key = base64.StdEncoding.EncodeToString(other.PrivateKeyPEM)
	broken, err := tc.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sopsfile.WriteFile(path, broken); err != nil {
		t.Fatal(err)
	}

	st, err := lifecycle.Status(t.Context(), opts)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var talosProblems []string
	for _, p := range st.Problems {
		if strings.HasPrefix(p, "talosconfig") {
			talosProblems = append(talosProblems, p)
		}
	}
	want := `talosconfig: context "` + tc.Context + `": `
	if len(talosProblems) != 1 || !strings.HasPrefix(talosProblems[0], want) || !strings.Contains(talosProblems[0], "private key does not match public key") {
		t.Errorf("problems %q: want one starting %q that says the key does not match", st.Problems, want)
	}
	for _, n := range st.Nodes {
		if n.Talos.Mode != "unknown" {
			t.Errorf("node %s: Talos %+v, want unknown", n.Name, n.Talos)
		}
	}
}
