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

var (
	rxISOExt     = regexp.MustCompile(`(?i)\.(?:iso|img)$`)
	rxVztmplExt  = regexp.MustCompile(`\.tar(?:\.(?:gz|xz|zst|bz2))?$`)
	rxImportExt  = regexp.MustCompile(`\.(?:ova|qcow2|raw|vmdk)$`)
	rxNormalize  = regexp.MustCompile(`[^a-zA-Z0-9_.\-]`)
	knownCompres = set("gz", "lzo", "zst", "bz2")
)

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
	filename := c.params.Get("filename")
	if i := strings.LastIndexAny(filename, "/\\"); i >= 0 {
		filename = filename[i+1:]
	}
	filename = rxNormalize.ReplaceAllString(filename, "_")
	if comp := c.params.Get("compression"); comp != "" {
		if !knownCompres[comp] {
			return nil, paramError(map[string]string{"compression": "value '" + comp + "' does not have a value in the enumeration 'gz, lzo, zst, bz2'"})
		}
		if content != "iso" {
			return nil, err500("decompression not supported for %s\n", content)
		}
	}
	s.mu.Lock()
	st := s.storages[id]
	var aerr *apiError
	switch {
	case st == nil:
		aerr = err500("storage '%s' does not exist\n", id)
	case !st.fileBased():
		aerr = err500("storage '%s' is not a file based storage!\n", id)
	case !st.hasContent(content):
		aerr = err500("storage '%s' is not configured for content-type '%s'\n", id, content)
	case content == "iso" && !rxISOExt.MatchString(filename),
		content == "vztmpl" && !rxVztmplExt.MatchString(filename),
		content == "import" && !rxImportExt.MatchString(filename):
		aerr = err500("invalid filename or wrong extension\n")
	}
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
				format = strings.TrimPrefix(rxImportExt.FindString(filename), ".")
			}
			s.volumes[volid] = &Volume{VolID: volid, Storage: id, Content: content, Format: format, Size: size, CTime: s.opts.Now().Unix()}
			lines = append(lines, "download of '"+url+"' to '"+dest+"' finished")
			return lines, nil
		}}), nil
}
