package lhdata_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/internal/testenv/s3server"
	"github.com/talforge/talforge/pkg/backuptarget"
)

const bucket = "lhdata"

var (
	user  = s3server.NewUser("longhorn", "Read:"+bucket, "Write:"+bucket, "List:"+bucket)
	s3srv = s3server.Shared{Options: s3server.Options{Users: []s3server.User{user}, Buckets: []string{bucket}}}
)

func TestMain(m *testing.M) {
	// backupstore logs every config it loads at info level; keep failures readable.
	logrus.SetLevel(logrus.WarnLevel)
	os.Exit(s3srv.Run(m))
}

// target returns credentials and a target URL of the test's own in the shared bucket.
func target(t testing.TB, path string) (backuptarget.Credentials, string) {
	srv := s3srv.Get(t)
	return srv.Credentials(user), "s3://" + bucket + "@" + srv.Region + "/" + path + "/"
}

// randomBlocks returns n bytes from a seeded generator (incompressible, reproducible).
func randomBlocks(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	p := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return p
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t testing.TB, s *lhdata.Store, vol string) []byte {
	t.Helper()
	b, err := s.ReadAll(vol)
	must(t, err)
	return b
}

func TestStoreFiles(t *testing.T) {
	s := lhdata.New(t.TempDir())
	const size = 8 * lhdata.BlockSize
	for _, tt := range []struct {
		name string
		size int64
		ok   bool
	}{
		{"vol-a", size, true},
		{"vol-odd", size + 512, false},
		{"vol-zero", 0, false},
		{"../escape", size, false},
	} {
		if err := s.Create(tt.name, tt.size); (err == nil) != tt.ok {
			t.Errorf("Create(%q, %d) = %v, want ok=%v", tt.name, tt.size, err, tt.ok)
		}
	}
	if err := s.Create("vol-a", size); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second Create = %v, want ErrExist", err)
	}
	if got := read(t, s, "vol-a"); len(got) != size || !bytes.Equal(got, make([]byte, size)) {
		t.Fatalf("new volume: %d bytes, not all zero", len(got))
	}
	// Sparse: nothing allocated yet.
	st, err := os.Stat(s.Path("vol-a"))
	must(t, err)
	if blocks := st.Sys().(*syscall.Stat_t).Blocks; blocks != 0 {
		t.Errorf("new volume allocates %d blocks", blocks)
	}
	if err := s.Write("vol-a", size-1, []byte{1, 2}); err == nil {
		t.Error("a write past the end was accepted")
	}

	first := randomBlocks(1, 4096)
	must(t, s.Write("vol-a", lhdata.BlockSize+100, first))
	must(t, s.Snapshot("vol-a", "snap-1"))
	if err := s.Snapshot("vol-a", "snap-1"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second snapshot with the same name: %v", err)
	}
	must(t, s.Write("vol-a", lhdata.BlockSize+100, randomBlocks(2, 4096)))
	must(t, s.Write("vol-a", 5*lhdata.BlockSize, []byte("later")))

	// The clone of snap-1 has exactly the data at snapshot time; a vol:// clone the current data.
	must(t, s.Clone("vol-snap", "vol-a", "snap-1"))
	want := make([]byte, size)
	copy(want[lhdata.BlockSize+100:], first)
	if !bytes.Equal(read(t, s, "vol-snap"), want) {
		t.Error("clone of snap-1 differs from the data at snapshot time")
	}
	must(t, s.Clone("vol-now", "vol-a", ""))
	if !bytes.Equal(read(t, s, "vol-now"), read(t, s, "vol-a")) {
		t.Error("clone of the volume differs from its data")
	}
	if err := s.Clone("vol-x", "vol-a", "no-such"); !errors.Is(err, lhdata.ErrNotFound) {
		t.Errorf("clone of a missing snapshot: %v", err)
	}
	if err := s.Clone("vol-now", "vol-a", "snap-1"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("clone onto an existing volume: %v", err)
	}

	snaps, err := s.Snapshots("vol-a")
	must(t, err)
	if strings.Join(snaps, ",") != "snap-1" || !s.HasSnapshot("vol-a", "snap-1") {
		t.Errorf("snapshots %v", snaps)
	}
	must(t, s.DeleteSnapshot("vol-a", "snap-1"))
	if s.HasSnapshot("vol-a", "snap-1") {
		t.Error("deleted snapshot still there")
	}
	vols, err := s.Volumes()
	must(t, err)
	if strings.Join(vols, ",") != "vol-a,vol-now,vol-snap" {
		t.Errorf("volumes %v", vols)
	}
	must(t, s.Delete("vol-a"))
	if s.Exists("vol-a") {
		t.Error("deleted volume exists")
	}
	if _, err := s.ReadAll("vol-a"); !errors.Is(err, lhdata.ErrNotFound) {
		t.Errorf("ReadAll of a deleted volume: %v", err)
	}
}

// TestBackupRestoreIncrementalAndLabels backs a volume up to the real S3 server with
// Longhorn's library, restores it elsewhere byte for byte, and checks what the library
// recorded: a second backup of a changed snapshot is incremental and uploads only the
// changed blocks; a backup whose previous snapshot is gone is full again; labels come back.
func TestBackupRestoreIncrementalAndLabels(t *testing.T) {
	ctx := t.Context()
	creds, url := target(t, "incremental")
	s := lhdata.New(t.TempDir())
	const blocks = 8
	must(t, s.Create("data", blocks*lhdata.BlockSize))
	// Blocks 0, 1, 2 and 5 hold data, the rest is zeros.
	for _, b := range []int64{0, 1, 2, 5} {
		must(t, s.Write("data", b*lhdata.BlockSize, randomBlocks(uint64(b)+10, lhdata.BlockSize)))
	}
	must(t, s.Snapshot("data", "snap-1"))
	snap1 := read(t, s, "data")
	labels := map[string]string{"KubernetesStatus": `{"namespace":"web","pvcName":"blog"}`, "RecurringJob": "nightly"}

	url1, err := s.Backup(ctx, creds, url, "data", "snap-1", "backup-one", labels)
	must(t, err)
	if want := url + "?backup=backup-one&volume=data"; url1 != want {
		t.Errorf("backup URL %q, want %q", url1, want)
	}
	full, err := lhdata.InspectBackup(ctx, creds, url1)
	must(t, err)
	if full.IsIncremental || full.VolumeName != "data" || full.VolumeSize != blocks*lhdata.BlockSize || full.SnapshotName != "snap-1" ||
		full.Size != 4*lhdata.BlockSize || full.Labels["KubernetesStatus"] != labels["KubernetesStatus"] || full.Labels["RecurringJob"] != "nightly" {
		t.Errorf("first backup: %+v", full)
	}
	if full.NewlyUploadedDataSize < 4*lhdata.BlockSize {
		t.Errorf("first backup uploaded %d bytes, want the 4 data blocks", full.NewlyUploadedDataSize)
	}

	must(t, s.Restore(ctx, creds, url1, "copy"))
	if !bytes.Equal(read(t, s, "copy"), snap1) {
		t.Fatal("restored data differs from the snapshot")
	}

	// Change block 2, zero block 5 explicitly: both must be in the incremental backup.
	must(t, s.Write("data", 2*lhdata.BlockSize, randomBlocks(99, lhdata.BlockSize)))
	must(t, s.Write("data", 5*lhdata.BlockSize, make([]byte, lhdata.BlockSize)))
	must(t, s.Snapshot("data", "snap-2"))
	snap2 := read(t, s, "data")
	url2, err := s.Backup(ctx, creds, url, "data", "snap-2", "backup-two", nil)
	must(t, err)
	inc, err := lhdata.InspectBackup(ctx, creds, url2)
	must(t, err)
	// One new random block (lz4 leaves it about its size) and one zero block (a few bytes).
	if !inc.IsIncremental || inc.NewlyUploadedDataSize < lhdata.BlockSize || inc.NewlyUploadedDataSize > lhdata.BlockSize+lhdata.BlockSize/8 {
		t.Errorf("second backup: incremental %v, uploaded %d bytes, want incremental with about one block", inc.IsIncremental, inc.NewlyUploadedDataSize)
	}
	if len(inc.Labels) != 0 {
		t.Errorf("second backup labels %v", inc.Labels)
	}
	must(t, s.Restore(ctx, creds, url2, "copy"))
	if !bytes.Equal(read(t, s, "copy"), snap2) {
		t.Fatal("restore of the incremental backup differs from snap-2")
	}
	must(t, s.Restore(ctx, creds, url1, "older"))
	if !bytes.Equal(read(t, s, "older"), snap1) {
		t.Fatal("the first backup no longer restores to snap-1")
	}

	// Like Longhorn: with the last backup's snapshot gone, the next backup is full.
	must(t, s.DeleteSnapshot("data", "snap-2"))
	must(t, s.Snapshot("data", "snap-3"))
	url3, err := s.Backup(ctx, creds, url, "data", "snap-3", "backup-three", nil)
	must(t, err)
	if info, err := lhdata.InspectBackup(ctx, creds, url3); err != nil || info.IsIncremental {
		t.Errorf("backup after the snapshot was deleted: %+v, %v; want a full backup", info, err)
	}

	list, err := lhdata.ListBackups(ctx, creds, url)
	must(t, err)
	var names []string
	for _, b := range list {
		names = append(names, b.Volume+"/"+b.Name)
	}
	if strings.Join(names, ",") != "data/backup-one,data/backup-three,data/backup-two" || list[0].URL != url1 {
		t.Errorf("listed %v", list)
	}
	must(t, lhdata.DeleteBackup(ctx, creds, url1))
	if _, err := lhdata.InspectBackup(ctx, creds, url1); err == nil {
		t.Error("a deleted backup can still be inspected")
	}
	// Blocks the first backup shared with the second stay.
	must(t, s.Restore(ctx, creds, url2, "after-delete"))
	if !bytes.Equal(read(t, s, "after-delete"), snap2) {
		t.Error("deleting the first backup broke the second")
	}
}

func TestTargetErrorsComeFromTheDriver(t *testing.T) {
	ctx := t.Context()
	creds, url := target(t, "errors")
	srv := s3srv.Get(t)
	s := lhdata.New(t.TempDir())
	must(t, s.Create("vol", 2*lhdata.BlockSize))
	must(t, s.Snapshot("vol", "snap"))

	wrongSecret := backuptarget.Credentials{}
	for k, v := range creds {
		wrongSecret[k] = v
	}
	wrongSecret[backuptarget.KeySecretAccessKey] = "not-the-secret"
	tests := []struct {
		name  string
		creds backuptarget.Credentials
		url   string
		want  string
	}{
		{"good", creds, url, ""},
		{"wrong secret", wrongSecret, url, "SignatureDoesNotMatch"},
		// the user holds no grant on it: refused like any bucket of another account
		{"someone else's bucket", creds, "s3://no-such-bucket@" + srv.Region + "/", "AccessDenied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := lhdata.CheckTarget(ctx, tt.creds, tt.url)
			if tt.want == "" {
				must(t, err)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "failed to list system backups in "+tt.url) {
				t.Errorf("CheckTarget: %v, want the driver's %q", err, tt.want)
			}
			if _, err := s.Backup(ctx, tt.creds, tt.url, "vol", "snap", "backup-x", nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Backup: %v, want the driver's %q", err, tt.want)
			}
		})
	}
	if err := s.Restore(ctx, creds, url+"?backup=backup-gone&volume=vol", "target"); err == nil || !strings.Contains(err.Error(), "backup-gone") {
		t.Errorf("restore of a backup that does not exist: %v", err)
	}
	if _, err := s.Backup(ctx, creds, url, "vol", "no-snap", "backup-y", nil); !errors.Is(err, lhdata.ErrNotFound) {
		t.Errorf("backup of a missing snapshot: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Backup(cancelled, creds, url, "vol", "snap", "backup-z", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("backup with a cancelled context: %v", err)
	}
}

// BenchmarkBackupRestore1GiB backs a 1 GiB volume of incompressible data up to the S3
// server and restores it into a new volume; the bytes per second count both directions of
// one volume's worth of data (b.SetBytes(1 GiB) per backup+restore).
func BenchmarkBackupRestore1GiB(b *testing.B) {
	ctx := context.Background()
	creds, url := target(b, "bench")
	s := lhdata.New(b.TempDir())
	const size = 1 << 30
	must(b, s.Create("bench", size))
	chunk := randomBlocks(7, 64<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		chunk[0], chunk[1] = byte(off>>20), byte(off>>28) // no two chunks alike
		must(b, s.Write("bench", off, chunk))
	}
	must(b, s.Snapshot("bench", "snap"))
	// Warm up: SeaweedFS allocates storage for the bucket on its first write (seconds),
	// which is not what this measures.
	must(b, s.Create("warm-up", lhdata.BlockSize))
	must(b, s.Snapshot("warm-up", "snap"))
	if _, err := s.Backup(ctx, creds, url, "warm-up", "snap", "backup-warm-up", nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	var backupTime, restoreTime time.Duration
	for i := range b.N {
		name := "bench-" + string(rune('a'+i%26))
		start := time.Now()
		backupURL, err := s.Backup(ctx, creds, url, "bench", "snap", "backup-"+name, nil)
		must(b, err)
		backupTime += time.Since(start)
		start = time.Now()
		must(b, s.Restore(ctx, creds, backupURL, "restored-"+name))
		restoreTime += time.Since(start)
		b.StopTimer()
		if !bytes.Equal(read(b, s, "restored-"+name), read(b, s, "bench")) {
			b.Fatal("the restored volume differs")
		}
		must(b, s.Delete("restored-"+name))
		b.StartTimer()
	}
	b.ReportMetric(backupTime.Seconds()/float64(b.N), "backup-s/op")
	b.ReportMetric(restoreTime.Seconds()/float64(b.N), "restore-s/op")
}
