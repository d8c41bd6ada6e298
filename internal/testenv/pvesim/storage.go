package pvesim

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// GET /nodes/{node}/storage
func (s *Server) listStorage(c *call) (any, *apiError) {
	want := c.params.Get("content")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, st := range s.sortedStorages() {
		if !c.token.can("/storage/"+st.ID, "Datastore.Audit") && !c.token.can("/storage/"+st.ID, "Datastore.AllocateSpace") {
			continue
		}
		if want != "" {
			ok := false
			for _, w := range splitList(want) {
				if st.hasContent(w) {
					ok = true
				}
			}
			if !ok {
				continue
			}
		}
		shared := 0
		if st.Shared {
			shared = 1
		}
		total, used := s.storageTotal(st), s.storageUsed(st.ID)
		out = append(out, map[string]any{"storage": st.ID, "type": st.Type, "content": strings.Join(st.Content, ","),
			"active": 1, "enabled": 1, "shared": shared, "total": total, "used": used, "avail": total - used,
			"used_fraction": float64(used) / float64(total)})
	}
	return out, nil
}

// GET /nodes/{node}/storage/{storage}/content
func (s *Server) storageContent(c *call) (any, *apiError) {
	id := c.uri["storage"]
	if aerr := c.requireAny("/storage/"+id, "Datastore.Audit", "Datastore.AllocateSpace"); aerr != nil {
		return nil, aerr
	}
	content := c.params.Get("content")
	vmid, _ := strconv.Atoi(c.params.Get("vmid"))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.storages[id] == nil {
		return nil, err500("storage '%s' does not exist\n", id)
	}
	out := []map[string]any{}
	ids := make([]string, 0)
	for volid, v := range s.volumes {
		if v.Storage == id && (content == "" || v.Content == content) && (vmid == 0 || v.VMID == vmid) {
			ids = append(ids, volid)
		}
	}
	sort.Strings(ids)
	for _, volid := range ids {
		v := s.volumes[volid]
		e := map[string]any{"volid": v.VolID, "format": v.Format, "size": v.Size, "ctime": v.CTime, "content": v.Content}
		if v.VMID != 0 {
			e["vmid"] = v.VMID
		}
		out = append(out, e)
	}
	return out, nil
}

// Filename checks of download-url, from pve-storage PVE/Storage.pm ($ISO_EXT_RE_0,
// $VZTMPL_EXT_RE_1, $SAFE_CHAR_CLASS_RE, $UPLOAD_IMPORT_EXT_RE_1) as PVE/API2/Storage/Status.pm
// download_url anchors them.
var (
	rxISOExt    = regexp.MustCompile(`(?i)[^/]+\.(?:iso|img)$`)
	rxVztmplExt = regexp.MustCompile(`(?i)[^/]+\.(?:tar|tar\.(?:gz|xz|zst|bz2))$`)
	rxImportExt = regexp.MustCompile(`[a-zA-Z0-9\-.+=_]+\.(ova|qcow2|raw|vmdk)$`)
	rxNormalize = regexp.MustCompile(`[^a-zA-Z0-9_.\-]`)
)

// normalizeContentFilename is PVE::Storage::normalize_content_filename: the base name, with
// every character but [a-zA-Z0-9_.-] replaced by '_'.
func normalizeContentFilename(name string) string {
	name = strings.TrimSuffix(name, "\n")
	if i := strings.LastIndexAny(name, "/\\"); i >= 0 {
		name = name[i+1:]
	}
	return rxNormalize.ReplaceAllString(name, "_")
}

// checkDownloadTarget is the synchronous part of pve-storage PVE/API2/Storage/Status.pm
// download_url: the storage must exist, be file based and allow the content type, and the
// (normalised) filename must carry the extension of that content type (s.mu held).
func (s *Server) checkDownloadTarget(id, content, filename string) *apiError {
	st := s.storages[id]
	switch {
	case st == nil:
		return err500("storage '%s' does not exist\n", id)
	case !st.fileBased():
		return err500("can't upload to storage type '%s', not a file based storage!\n", st.Type)
	case !st.hasContent(content):
		return err500("storage '%s' is not configured for content-type '%s'\n", id, content)
	}
	switch content {
	case "iso":
		if !rxISOExt.MatchString(filename) {
			return paramError(map[string]string{"filename": "wrong file extension"})
		}
	case "vztmpl":
		if !rxVztmplExt.MatchString(filename) {
			return paramError(map[string]string{"filename": "wrong file extension"})
		}
	case "import":
		if !rxImportExt.MatchString(filename) {
			return paramError(map[string]string{"filename": "invalid filename or wrong extension"})
		}
	default:
		return paramError(map[string]string{"content": "upload content-type '" + content + "' is not allowed"})
	}
	return nil
}

// POST /nodes/{node}/storage/{storage}/download-url
func (s *Server) downloadURL(c *call) (any, *apiError) {
	id := c.uri["storage"]
	if aerr := c.require("/storage/"+id, "Datastore.AllocateTemplate"); aerr != nil {
		return nil, aerr
	}
	if !(c.token.can("/", "Sys.Audit") && c.token.can("/", "Sys.Modify")) && !c.token.can("/nodes/"+c.uri["node"], "Sys.AccessNetwork") {
		return nil, errStatus(403, "Permission check failed\n")
	}
	content := c.params.Get("content")
	filename := normalizeContentFilename(c.params.Get("filename"))
	compression := c.params.Get("compression")
	s.mu.Lock()
	st := s.storages[id]
	aerr := s.checkDownloadTarget(id, content, filename)
	s.mu.Unlock()
	if aerr != nil {
		return nil, aerr
	}
	url := c.params.Get("url")
	volid := id + ":" + content + "/" + filename
	dir := "template/iso"
	switch content {
	case "vztmpl":
		dir = "template/cache"
	case "import":
		dir = "import"
	}
	dest := st.Path + "/" + dir + "/" + filename
	return s.startTask(c, taskSpec{typ: "download", id: filename,
		work: func() ([]string, *taskError) {
			// the worker refuses decompression for anything but ISOs (Status.pm download_url)
			if compression != "" && content != "iso" {
				return nil, failTask("decompression not supported for %s", content)
			}
			lines := []string{"downloading " + url + " to " + dest}
			if s.volumes[volid] != nil {
				return lines, failTask("refusing to override existing file '%s'", dest)
			}
			s.mu.Unlock()
			size, err := s.opts.Download(url)
			s.mu.Lock()
			if err != nil {
				return lines, failTask("download failed: %s", err.Error())
			}
			format := content
			if content == "import" {
				format = rxImportExt.FindStringSubmatch(filename)[1]
			}
			s.volumes[volid] = &Volume{VolID: volid, Storage: id, Content: content, Format: format, Size: size, CTime: s.opts.Now().Unix()}
			lines = append(lines, "download of '"+url+"' to '"+dest+"' finished")
			return lines, nil
		}}), nil
}
