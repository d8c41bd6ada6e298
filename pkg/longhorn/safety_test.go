package longhorn

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoCodePathUninstallsOrDeletesNamespaceOrCRDs reads this package's source: no Helm
// uninstall, no deletion of a namespace or a CRD (directly or through the dynamic client),
// no Atomic or DisableHooks set to anything but false.
func TestNoCodePathUninstallsOrDeletesNamespaceOrCRDs(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(file, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if name := x.Sel.Name; name == "NewUninstall" || name == "Uninstall" || name == "UninstallRelease" {
					t.Errorf("%s: uses %s", fset.Position(x.Pos()), name)
				}
			case *ast.CallExpr:
				sel, ok := x.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Delete" && sel.Sel.Name != "DeleteCollection") {
					return true
				}
				if target := deleteTarget(sel.X); target != "" {
					t.Errorf("%s: deletes %s", fset.Position(x.Pos()), target)
				}
			case *ast.AssignStmt:
				for i, lhs := range x.Lhs {
					sel, ok := lhs.(*ast.SelectorExpr)
					if !ok || (sel.Sel.Name != "Atomic" && sel.Sel.Name != "DisableHooks") {
						continue
					}
					if i >= len(x.Rhs) {
						t.Errorf("%s: %s set from a multi-value expression", fset.Position(x.Pos()), sel.Sel.Name)
						continue
					}
					if id, ok := x.Rhs[i].(*ast.Ident); !ok || id.Name != "false" {
						t.Errorf("%s: %s is set to something other than false", fset.Position(x.Pos()), sel.Sel.Name)
					}
				}
			}
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("checked only %d files", checked)
	}
}

// deleteTarget names what a Delete call's receiver addresses when it is a namespace or a
// CRD: cs.CoreV1().Namespaces(), ext...CustomResourceDefinitions(), or the dynamic client
// on namespaceGVR / a customresourcedefinitions GVR.
func deleteTarget(recv ast.Expr) string {
	call, ok := recv.(*ast.CallExpr)
	if !ok {
		return ""
	}
	// dyn.Resource(gvr).Namespace(ns).Delete: look through .Namespace(...)
	if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Namespace" {
		if inner, ok := sel.X.(*ast.CallExpr); ok {
			call = inner
		}
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	switch sel.Sel.Name {
	case "Namespaces", "CustomResourceDefinitions":
		return sel.Sel.Name
	case "Resource":
		if len(call.Args) == 1 {
			if id, ok := call.Args[0].(*ast.Ident); ok && (id.Name == "namespaceGVR" || strings.Contains(strings.ToLower(id.Name), "crd") || strings.Contains(strings.ToLower(id.Name), "customresourcedefinition")) {
				return id.Name
			}
		}
	}
	return ""
}

func TestSafetyCheckCatchesViolations(t *testing.T) {
	src := `package x
func f() {
	cs.CoreV1().Namespaces().Delete(ctx, "longhorn-system", opts)
	ext.ApiextensionsV1().CustomResourceDefinitions().Delete(ctx, "volumes.longhorn.io", opts)
	dyn.Resource(namespaceGVR).Delete(ctx, "x", opts)
	dyn.Resource(crdGVR).Namespace("").DeleteCollection(ctx, opts, lo)
	cs.CoreV1().Secrets(ns).Delete(ctx, "ok", opts)
}`
	file, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	ast.Inspect(file, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Delete" || sel.Sel.Name == "DeleteCollection") {
				if tgt := deleteTarget(sel.X); tgt != "" {
					found = append(found, tgt)
				}
			}
		}
		return true
	})
	if got := strings.Join(found, ","); got != "Namespaces,CustomResourceDefinitions,namespaceGVR,crdGVR" {
		t.Errorf("detected %q", got)
	}
}
