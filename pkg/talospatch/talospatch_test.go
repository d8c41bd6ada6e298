package talospatch_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"

	"github.com/talforge/talforge/pkg/talospatch"
)

const base = `version: v1alpha1
machine:
  type: worker
  token: t0k3n
  certSANs: [a.lan, b.lan]
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.35.0
    extraArgs: {rotate-server-certificates: "true"}
  install: {disk: /dev/sda, wipe: true}
cluster:
  controlPlane: {endpoint: "https://10.0.0.5:6443"}
  clusterName: lab
  network: {dnsDomain: cluster.local}
---
apiVersion: v1alpha1
kind: TimeSyncConfig
ntp: {servers: [pool.ntp.org]}
---
apiVersion: v1alpha1
kind: HostnameConfig
auto: stable
`

// target changes a list (certSANs shorter, ntp servers), sets a bool back to false, removes a
// map key, adds a key, drops a document and adds a named one.
const target = `version: v1alpha1
machine:
  type: worker
  token: t0k3n
  certSANs: [c.lan]
  kubelet:
    image: ghcr.io/siderolabs/kubelet:v1.36.0
  install: {disk: /dev/vda, wipe: false}
  nodeLabels: {zone: a}
cluster:
  controlPlane: {endpoint: "https://10.0.0.5:6443"}
  clusterName: lab
  network: {dnsDomain: cluster.local}
---
apiVersion: v1alpha1
kind: TimeSyncConfig
ntp: {servers: [time.cloudflare.com]}
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: longhorn
provisioning:
  diskSelector: {match: disk.serial == "x"}
  minSize: 1GiB
`

// TestFileReproducesTheTarget: the patch file of the diff, applied by machinery's own
// configpatcher to the base, gives the target, as data; and no diff, no patch.
func TestFileReproducesTheTarget(t *testing.T) {
	from, to := decode(t, base), decode(t, target)
	file, err := talospatch.File(talospatch.Diff(from, to))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(file), "$patch: delete") {
		t.Errorf("a shortened list and a removed document need deletes:\n%s", file)
	}
	patches, err := configpatcher.LoadPatches([]string{string(file)})
	if err != nil {
		t.Fatalf("%v\n%s", err, file)
	}
	cfg, err := configloader.NewFromBytes([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	out, err := configpatcher.Apply(configpatcher.WithConfig(cfg), patches)
	if err != nil {
		t.Fatalf("%v\n%s", err, file)
	}
	got, err := out.Config()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := talospatch.Decode(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byKey(docs), byKey(to)) {
		t.Errorf("the patched base is not the target:\npatch:\n%s\ngot: %v\nwant: %v", file, byKey(docs), byKey(to))
	}

	if ops := talospatch.Diff(to, to); len(ops) != 0 {
		t.Errorf("a config differs from itself: %v", ops)
	}
	if f, err := talospatch.File(nil); err != nil || f != nil {
		t.Errorf("no ops gave %q, %v", f, err)
	}
}

func decode(t *testing.T, text string) []talospatch.Document {
	t.Helper()
	cfg, err := configloader.NewFromBytes([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := talospatch.Decode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

func byKey(docs []talospatch.Document) map[talospatch.DocKey]map[string]any {
	out := map[talospatch.DocKey]map[string]any{}
	for _, d := range docs {
		out[d.Key] = d.Data
	}
	return out
}
