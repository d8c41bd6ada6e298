package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeClient is the Kube the health phases use against a real cluster: client-go with the admin kubeconfig
// Talos hands out, whose server is the cluster endpoint (the VIP when the profile has one).
type KubeClient struct {
	server string
	cs     kubernetes.Interface
}

// NewKubeClient builds a KubeClient from a kubeconfig's current context.
func NewKubeClient(kubeconfig []byte) (*KubeClient, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}

	return &KubeClient{server: cfg.Host, cs: cs}, nil
}

// Server implements Kube.
func (k *KubeClient) Server() string { return k.server }

// ServerVersion implements Kube with GET /version.
func (k *KubeClient) ServerVersion(ctx context.Context) (string, error) {
	raw, err := k.cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", err
	}

	var v struct {
		GitVersion string `json:"gitVersion"`
	}

	if err := json.Unmarshal(raw, &v); err != nil {
		return "", fmt.Errorf("/version: %w", err)
	}

	return v.GitVersion, nil
}

// NodeNames implements Kube.
func (k *KubeClient) NodeNames(ctx context.Context) ([]string, error) {
	list, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}

	names := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		names = append(names, n.Name)
	}

	slices.Sort(names)

	return names, nil
}
