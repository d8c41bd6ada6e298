package claim

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func pvc(ns, name, pv string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: pv}}
	if pv != "" {
		c.Status.Phase = corev1.ClaimBound
	} else {
		c.Status.Phase = corev1.ClaimPending
	}
	return c
}

func pv(name, driver, handle string) *corev1.PersistentVolume {
	p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if driver != "" {
		p.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: handle}
	}
	return p
}

func TestResolve(t *testing.T) {
	const uid = "pvc-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	tests := []struct {
		name    string
		objs    []runtime.Object
		static  string
		want    Resolution
		wantErr string
		is      error
	}{
		{name: "dynamically provisioned", objs: []runtime.Object{pvc("traefik", "traefik", uid), pv(uid, CSIDriver, uid)},
			want: Resolution{Namespace: "traefik", Claim: "traefik", Exists: true, Phase: "Bound", PV: uid, Volume: uid}},
		{name: "handle differs from the PV name", objs: []runtime.Object{pvc("traefik", "traefik", "restored-pv"), pv("restored-pv", CSIDriver, "traefik-data")},
			want: Resolution{Namespace: "traefik", Claim: "traefik", Exists: true, Phase: "Bound", PV: "restored-pv", Volume: "traefik-data"}},
		{name: "no claim yet", want: Resolution{Namespace: "traefik", Claim: "traefik"}},
		{name: "no claim, static name", static: "traefik-data", want: Resolution{Namespace: "traefik", Claim: "traefik", Volume: "traefik-data"}},
		{name: "pending claim", objs: []runtime.Object{pvc("traefik", "traefik", "")},
			want: Resolution{Namespace: "traefik", Claim: "traefik", Exists: true, Phase: "Pending"}},
		{name: "pending claim, static name", static: "traefik-data", objs: []runtime.Object{pvc("traefik", "traefik", "")},
			want: Resolution{Namespace: "traefik", Claim: "traefik", Exists: true, Phase: "Pending"}},
		{name: "another driver", objs: []runtime.Object{pvc("traefik", "traefik", "nfs-1"), pv("nfs-1", "nfs.csi.k8s.io", "x")},
			wantErr: "CSI driver nfs.csi.k8s.io", is: ErrNotLonghorn},
		{name: "in-tree volume", objs: []runtime.Object{pvc("traefik", "traefik", "hostpath"), pv("hostpath", "", "")},
			wantErr: "no CSI driver", is: ErrNotLonghorn},
		{name: "missing PV", objs: []runtime.Object{pvc("traefik", "traefik", uid)}, wantErr: "which does not exist"},
		{name: "static name disagrees", static: "traefik-data", objs: []runtime.Object{pvc("traefik", "traefik", uid), pv(uid, CSIDriver, uid)},
			wantErr: "but the profile names the volume traefik-data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objs...)
			got, err := Resolve(context.Background(), cs, "traefik", "traefik", tt.static)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("error %v is not %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
