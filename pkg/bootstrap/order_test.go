package bootstrap

import (
	"strings"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"github.com/siderolabs/talos/pkg/machinery/config/types/network"
)

// TestDocumentOrder: a machine config is a set of documents. The same documents in another
// order (a config written by another tool) are no change to apply; another value is one.
func TestDocumentOrder(t *testing.T) {
	hostname := func(name string) config.Document {
		h := network.NewHostnameConfigV1Alpha1()
		h.ConfigHostname = name
		return h
	}
	resolver := network.NewResolverConfigV1Alpha1()

	build := func(docs ...config.Document) *container.Container {
		t.Helper()
		c, err := container.New(docs...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	for _, tt := range []struct {
		name          string
		live, desired *container.Container
		changed       bool
	}{
		{"same order", build(hostname("cp-1"), resolver), build(hostname("cp-1"), resolver), false},
		{"other order", build(resolver, hostname("cp-1")), build(hostname("cp-1"), resolver), false},
		{"other value", build(resolver, hostname("cp-1")), build(hostname("cp-2"), resolver), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed, diff, err := redactedDiff(tt.live, tt.desired)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed || (changed && !strings.Contains(diff, "+hostname: cp-2")) {
				t.Errorf("changed %v, want %v:\n%s", changed, tt.changed, diff)
			}
		})
	}
}
