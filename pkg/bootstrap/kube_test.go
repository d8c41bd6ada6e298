package bootstrap_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/talforge/talforge/internal/testenv/kubeenv"
	"github.com/talforge/talforge/pkg/bootstrap"
)

// TestKubeHealthAgainstRealAPIServer runs the Kubernetes health phases with the client-go KubeClient against
// a real kube-apiserver, with the kubeconfig fetched from an emulated control plane as in production.
func TestKubeHealthAgainstRealAPIServer(t *testing.T) {
	kube := kubeenv.Start(t)
	r := renderProfile(t, "ha")
	e := emulate(t, r, emulateOptions{subnet: 10, configured: r.configs})
	e.etcd.SetKubeconfig(kube.Kubeconfig)

	var out syncBuffer

	run := e.runner(t, &out, bootstrap.Options{HealthTimeout: time.Second})

	kubeconfig, err := run.Kubeconfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	client, err := bootstrap.NewKubeClient(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}

	if client.Server() != kube.Host {
		t.Fatalf("probing %s, want the kubeconfig's server %s", client.Server(), kube.Host)
	}

	version, err := client.ServerVersion(t.Context())
	if err != nil || !strings.HasPrefix(version, "v1.") {
		t.Fatalf("ServerVersion = %q, %v", version, err)
	}

	err = run.KubeHealth(t.Context(), client)

	var be *bootstrap.Error
	if !errors.As(err, &be) || be.Phase != bootstrap.PhaseHealthNodes || !strings.Contains(be.LastSeen, "worker-3: not registered") {
		t.Fatalf("err = %v, want the registration phase to list unregistered nodes", err)
	}

	cs, err := kubernetes.NewForConfig(kube.Config)
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range haNodes {
		if _, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	names, err := client.NodeNames(t.Context())
	if err != nil || !slices.Equal(names, haNodes) {
		t.Fatalf("NodeNames = %v, %v", names, err)
	}

	if err := run.KubeHealth(t.Context(), client); err != nil {
		t.Fatal(err)
	}
}
