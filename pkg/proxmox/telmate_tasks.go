// API methods on storage and tasks: storage content, URL downloads, task status and log.

package proxmox

import (
	"context"
	"fmt"

	pxapi "github.com/Telmate/proxmox-api-go/proxmox"
)

// StorageContent implements API.
func (t *Telmate) StorageContent(ctx context.Context, node, storage, content string) ([]StorageVolume, error) {
	return guard("list storage content", func() ([]StorageVolume, error) {
		files, err := pxapi.ListFiles(ctx, t.c, node, storage, pxapi.ContentType(content))
		if err != nil {
			return nil, err
		}

		out := make([]StorageVolume, 0, len(*files))
		for _, f := range *files {
			out = append(out, StorageVolume{VolID: storage + ":" + content + "/" + f.Name, Size: int64(f.Size)})
		}

		return out, nil
	})
}

// DownloadURL implements API (the parameters of Telmate's DownloadIsoFromUrl, without its
// 2 s task polling).
func (t *Telmate) DownloadURL(ctx context.Context, node, storage string, req DownloadRequest) (string, error) {
	return t.post(ctx, "download-url", "/nodes/"+node+"/storage/"+storage+"/download-url",
		Params{"content": req.Content, "filename": req.Filename, "url": req.URL})
}

// TaskStatus implements API.
func (t *Telmate) TaskStatus(ctx context.Context, upid string) (TaskStatus, error) {
	node, err := upidNode(upid)
	if err != nil {
		return TaskStatus{}, err
	}

	return guard("task status", func() (TaskStatus, error) {
		m, err := t.c.GetItemConfigMapStringInterface(ctx, "/nodes/"+node+"/tasks/"+upid+"/status", "task", "status")
		if err != nil {
			return TaskStatus{}, err
		}

		st := TaskStatus{Running: m["status"] != "stopped"}
		if !st.Running {
			st.ExitStatus = stringify(m["exitstatus"])
		}

		return st, nil
	})
}

// TaskLog implements API.
func (t *Telmate) TaskLog(ctx context.Context, upid string, n int) ([]string, error) {
	node, err := upidNode(upid)
	if err != nil {
		return nil, err
	}

	base := "/nodes/" + node + "/tasks/" + upid + "/log"

	return guard("task log", func() ([]string, error) {
		head, err := t.c.GetItemConfig(ctx, base+"?start=0&limit=1", "task", "log")
		if err != nil {
			return nil, err
		}

		start := max(0, atoiLoose(head["total"])-n)

		page, err := t.c.GetItemConfig(ctx, fmt.Sprintf("%s?start=%d&limit=%d", base, start, n), "task", "log")
		if err != nil {
			return nil, err
		}

		var lines []string
		for _, e := range page["data"].([]any) {
			lines = append(lines, stringify(e.(map[string]any)["t"]))
		}

		return lines, nil
	})
}
