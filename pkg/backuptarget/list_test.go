package backuptarget_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/longhorn/backupstore"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/pkg/backuptarget"
)

const blockSize = 2 << 20 // Longhorn's default backup block size (backupstore types.go)

// block is one backup block of data: b repeated.
func block(b byte) []byte { return bytes.Repeat([]byte{b}, blockSize) }

// backupOf writes the blocks (offset → data) into vol, snapshots it and backs the
// snapshot up as name with labels, the way Longhorn's engine does (lhdata).
func backupOf(t *testing.T, st *lhdata.Store, c backuptarget.Credentials, target, vol, name string, labels map[string]string, blocks map[int64][]byte) string {
	t.Helper()
	if !st.Exists(vol) {
		if err := st.Create(vol, 4*blockSize); err != nil {
			t.Fatal(err)
		}
	}
	for off, data := range blocks {
		if err := st.Write(vol, off, data); err != nil {
			t.Fatal(err)
		}
	}
	snap := "snap-" + name
	if err := st.Snapshot(vol, snap); err != nil {
		t.Fatal(err)
	}
	url, err := st.Backup(t.Context(), c, target, vol, snap, name, labels)
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// claimLabels are the labels longhorn-manager puts on a backup of a volume bound to
// namespace/claim through PV pv (api/snapshot.go), plus a recurring job's.
func claimLabels(namespace, claim, pv string) map[string]string {
	ks := backuptarget.KubernetesStatus{Namespace: namespace, PVCName: claim, PVName: pv, PVStatus: "Bound",
		WorkloadsStatus: []backuptarget.WorkloadStatus{{PodName: claim + "-0", PodStatus: "Running", WorkloadName: claim, WorkloadType: "StatefulSet"}}}
	return map[string]string{backuptarget.KubernetesStatusLabel: ks.Label(), "RecurringJob": "nightly"}
}

// TestListFindsClaimsAcrossBackupVolumes: a claim re-created after a rebuild is a new
// Longhorn volume (pvc-<new uid>); its newest backup is found across both backup volumes.
func TestListFindsClaimsAcrossBackupVolumes(t *testing.T) {
	srv := s3srv.Get(t)
	c := creds(srv, policyUser)
	target := rootTarget + "list/"
	st := lhdata.New(t.TempDir())

	const oldVol, newVol, bare = "pvc-0a0a0a0a-0000-4000-8000-00000000000a", "pvc-0b0b0b0b-0000-4000-8000-00000000000b", "static-data"
	old1 := backupOf(t, st, c, target, oldVol, "backup-old-1", claimLabels("traefik", "traefik", oldVol), map[int64][]byte{0: block('a')})
	old2 := backupOf(t, st, c, target, oldVol, "backup-old-2", claimLabels("traefik", "traefik", oldVol), map[int64][]byte{blockSize: block('b')})
	newest := backupOf(t, st, c, target, newVol, "backup-new-1", claimLabels("traefik", "traefik", newVol), map[int64][]byte{0: block('c')})
	backupOf(t, st, c, target, bare, "backup-bare-1", nil, map[int64][]byte{0: block('d')})

	l, err := backuptarget.List(t.Context(), target, c)
	if err != nil {
		t.Fatal(err)
	}
	if l.Target != target {
		t.Errorf("Target = %q, want %q", l.Target, target)
	}
	var names []string
	for _, v := range l.Volumes {
		names = append(names, v.Name)
		if len(v.Problems) > 0 || len(v.InProgress) > 0 {
			t.Errorf("volume %s: problems %v, in progress %v", v.Name, v.Problems, v.InProgress)
		}
	}
	if strings.Join(names, " ") != strings.Join([]string{oldVol, newVol, bare}, " ") {
		t.Fatalf("volumes = %v", names)
	}

	ov := l.Volumes[0]
	if ov.Size != 4*blockSize || ov.BlockCount != 2 || ov.LastBackup != "backup-old-2" || ov.Compression != "lz4" {
		t.Errorf("volume %s = size %d, blocks %d, last %q, compression %q", ov.Name, ov.Size, ov.BlockCount, ov.LastBackup, ov.Compression)
	}
	if len(ov.Backups) != 2 || ov.Backups[0].Name != "backup-old-2" || ov.Backups[1].Name != "backup-old-1" {
		t.Fatalf("backups of %s are not newest first: %+v", ov.Name, ov.Backups)
	}
	b2, b1 := ov.Backups[0], ov.Backups[1]
	if b2.URL != old2 || b1.URL != old1 {
		t.Errorf("URLs = %q, %q; the backups were made as %q, %q", b2.URL, b1.URL, old2, old1)
	}
	if !b2.Incremental || b1.Incremental || b2.BlockCount != 2 || b1.BlockCount != 1 || b2.Size != 2*blockSize {
		t.Errorf("backup-old-2 incremental %v, %d blocks, size %d; backup-old-1 incremental %v, %d blocks",
			b2.Incremental, b2.BlockCount, b2.Size, b1.Incremental, b1.BlockCount)
	}
	if b2.Snapshot != "snap-backup-old-2" || b2.VolumeSize != 4*blockSize || b2.Compression != "lz4" || !b2.Created.After(b1.Created) {
		t.Errorf("backup-old-2 = %+v", b2)
	}
	if b2.Claim == nil || b2.ClaimName() != "traefik/traefik" || b2.Claim.PVName != oldVol || b2.Labels["RecurringJob"] != "nightly" {
		t.Errorf("backup-old-2 claim %+v, labels %v", b2.Claim, b2.Labels)
	}
	if bn, vn, _, err := backupstore.DecodeBackupURL(b2.URL); err != nil || bn != "backup-old-2" || vn != oldVol {
		t.Errorf("DecodeBackupURL(%s) = %s %s %v", b2.URL, bn, vn, err)
	}

	if got := l.LatestForClaim("traefik", "traefik"); got == nil || got.URL != newest {
		t.Errorf("LatestForClaim(traefik/traefik) = %+v, want %s", got, newest)
	}
	if got := l.LatestForVolume(oldVol); got == nil || got.Name != "backup-old-2" {
		t.Errorf("LatestForVolume(%s) = %+v", oldVol, got)
	}
	if got := l.LatestForVolume(bare); got == nil || got.Claim != nil {
		t.Errorf("LatestForVolume(%s) = %+v, want a backup with no claim", bare, got)
	}
	if claims := l.Claims(); len(claims) != 1 || claims[0].Backups != 3 || claims[0].Latest.URL != newest || len(claims[0].Volumes) != 2 {
		t.Errorf("Claims() = %+v", claims)
	}

	// Inspect reads one backup by URL with backupstore.InspectBackup.
	in, err := backuptarget.Inspect(t.Context(), old1, c)
	if err != nil {
		t.Fatal(err)
	}
	if in.Name != "backup-old-1" || in.Volume != oldVol || in.Snapshot != "snap-backup-old-1" || in.ClaimName() != "traefik/traefik" || !in.Created.Equal(b1.Created) || in.BlockCount != -1 {
		t.Errorf("Inspect = %+v", in)
	}
}

// TestListFailsClearly: what stops List altogether says why.
func TestListFailsClearly(t *testing.T) {
	srv := s3srv.Get(t)
	bad := creds(srv, policyUser)
	bad[backuptarget.KeySecretAccessKey] = "not-the-secret-" + strings.Repeat("x", 25)
	_, err := backuptarget.List(t.Context(), rootTarget, bad)
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") || strings.Contains(err.Error(), "0x") {
		t.Errorf("List with a wrong secret: %v", err)
	}
	var e *backuptarget.Error
	if !errors.As(err, &e) || e.Cause != backuptarget.CauseCredentials {
		t.Errorf("List with a wrong secret: cause not credentials: %#v", err)
	}
}
