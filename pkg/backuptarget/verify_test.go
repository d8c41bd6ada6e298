package backuptarget_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/longhorn/backupstore/util"

	"github.com/talforge/talforge/internal/testenv/lhdata"
	"github.com/talforge/talforge/pkg/backuptarget"
)

// TestVerify damages copies of one good backup target in the ways that make backups
// unrestorable, and checks that Verify names each damage (volume, backup, block) and
// nothing else.
func TestVerify(t *testing.T) {
	srv := s3srv.Get(t)
	c := creds(srv, policyUser)
	a := newAdmin(t, srv)

	// The source: vol-a with a full backup (blocks X, Y) and an incremental one (X shared,
	// Y changed to Y2), vol-b with one backup (Z): 3 backups, 4 distinct blocks.
	const src = "verify-src/"
	st := lhdata.New(t.TempDir())
	x, y, y2, z := block('x'), block('y'), block('Y'), block('z')
	backupOf(t, st, c, rootTarget+src, "vol-a", "backup-a-1", claimLabels("db", "data", "vol-a"), map[int64][]byte{0: x, blockSize: y})
	backupOf(t, st, c, rootTarget+src, "vol-a", "backup-a-2", claimLabels("db", "data", "vol-a"), map[int64][]byte{blockSize: y2})
	backupOf(t, st, c, rootTarget+src, "vol-b", "backup-b-1", nil, map[int64][]byte{0: z})
	sumX, sumY2 := util.GetChecksum(x), util.GetChecksum(y2)
	blk := func(prefix, vol, sum string) string {
		p, err := backuptarget.BlockPath(vol, sum)
		if err != nil {
			t.Fatal(err)
		}
		return prefix + p
	}

	type want struct {
		volumes, backups, blocks int
		problems                 []string // "kind volume backup block", in report order (backups newest first)
	}
	good := want{volumes: 2, backups: 3, blocks: 4}
	tests := []struct {
		name     string
		damage   func(prefix string)
		opts     backuptarget.VerifyOptions
		want     want
		readData bool // whether BytesRead must equal the stored size of every block
	}{
		{name: "good", want: good},
		{name: "good, data read", opts: backuptarget.VerifyOptions{ReadData: true}, want: good, readData: true},
		{name: "deleted shared block", damage: func(p string) { a.del(blk(p, "vol-a", sumX)) },
			want: want{2, 3, 4, []string{"block-missing vol-a backup-a-2 " + sumX, "block-missing vol-a backup-a-1 " + sumX}}},
		{name: "corrupted block, existence only", damage: func(p string) { flipByte(a, blk(p, "vol-a", sumY2)) }, want: good},
		{name: "corrupted block, data read", damage: func(p string) { flipByte(a, blk(p, "vol-a", sumY2)) }, opts: backuptarget.VerifyOptions{ReadData: true},
			want: want{2, 3, 4, []string{"block-corrupt vol-a backup-a-2 " + sumY2}}},
		{name: "empty block", damage: func(p string) { a.put(blk(p, "vol-b", util.GetChecksum(z)), nil) },
			want: want{2, 3, 4, []string{"block-empty vol-b backup-b-1 " + util.GetChecksum(z)}}},
		{name: "backup config missing", damage: func(p string) { a.del(p + backuptarget.BackupConfigPath("vol-a", "backup-a-2")) },
			want: want{2, 2, 3, []string{"backup-config vol-a backup-a-2 "}}},
		{name: "backup config not parseable", damage: func(p string) {
			a.put(p+backuptarget.BackupConfigPath("vol-a", "backup-a-1"), []byte(`{"Name": "backup-a-1", "Blocks": [`))
		},
			want: want{2, 3, 3, []string{"backup-config vol-a backup-a-1 "}}},
		{name: "volume.cfg not parseable", damage: func(p string) { a.put(p+backuptarget.VolumeConfigPath("vol-b"), []byte("not json")) },
			want: want{2, 2, 3, []string{"volume-config vol-b  "}}},
		{name: "volume.cfg missing", damage: func(p string) { a.del(p + backuptarget.VolumeConfigPath("vol-b")) },
			want: want{2, 2, 3, []string{"volume-config vol-b  "}}},
		{name: "one volume", opts: backuptarget.VerifyOptions{Volumes: []string{"vol-b"}}, want: want{volumes: 1, backups: 1, blocks: 1}},
		{name: "unknown volume", opts: backuptarget.VerifyOptions{Volumes: []string{"vol-b", "vol-nope"}},
			want: want{1, 1, 1, []string{"volume-missing vol-nope  "}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := src
			if tt.damage != nil {
				prefix = "verify-" + string(rune('a'+i)) + "/"
				a.copyPrefix(src, prefix)
				tt.damage(prefix)
			}
			start := time.Now()
			r, err := backuptarget.Verify(t.Context(), rootTarget+prefix, c, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			// No retry backoff (backupstore's first one is 1 s) on a block that is gone or wrong.
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Verify took %s", d)
			}
			var got []string
			for _, p := range r.Problems {
				t.Log(p)
				got = append(got, strings.Join([]string{string(p.Kind), p.Volume, p.Backup, p.Block}, " "))
				if p.Detail == "" || (p.Block != "" && !strings.HasPrefix(p.Path, "backupstore/volumes/")) {
					t.Errorf("problem without detail or path: %+v", p)
				}
			}
			if r.Volumes != tt.want.volumes || r.Backups != tt.want.backups || r.Blocks != tt.want.blocks ||
				!slices.Equal(got, tt.want.problems) || r.OK() != (len(tt.want.problems) == 0) {
				t.Errorf("report: %d volumes, %d backups, %d blocks, problems:\n  %s\nwant %d, %d, %d, problems:\n  %s",
					r.Volumes, r.Backups, r.Blocks, strings.Join(got, "\n  "), tt.want.volumes, tt.want.backups, tt.want.blocks, strings.Join(tt.want.problems, "\n  "))
			}
			if tt.readData {
				var stored int64
				for k, size := range a.keys(prefix) {
					if strings.HasSuffix(k, ".blk") {
						stored += size
					}
				}
				if r.BytesRead != stored || stored == 0 {
					t.Errorf("BytesRead = %d, the blocks are stored in %d bytes", r.BytesRead, stored)
				}
			} else if !tt.opts.ReadData && r.BytesRead != 0 {
				t.Errorf("BytesRead = %d without ReadData", r.BytesRead)
			}
			if r.Listing == nil || len(r.Listing.Volumes) != tt.want.volumes {
				t.Errorf("the report's listing has %v", r.Listing)
			}
		})
	}
}

// flipByte changes one byte in the middle of an object: it still exists with its size.
func flipByte(a *admin, key string) {
	a.t.Helper()
	data := a.get(key)
	if len(data) < 16 {
		a.t.Fatalf("%s has only %d bytes", key, len(data))
	}
	data[len(data)/2] ^= 0xff
	a.put(key, data)
}
