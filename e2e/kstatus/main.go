// Command kstatus prints how the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus), used
// by Flux, kpt and Argo-style tooling, judges Kubernetes objects read as JSON from stdin
// (a single object or a List, as `kubectl get -o json` prints them).
//
// Output: one line per object, "<name> <status> <message>", status one of InProgress,
// Current, Failed, Terminating, NotFound, Unknown.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// apimachinery's json keeps integers int64, as unstructured objects need.
	var raw map[string]interface{}
	if err := json.Unmarshal(data, &raw); err != nil {
		fail(err)
	}
	objects := []map[string]interface{}{raw}
	if items, ok := raw["items"].([]interface{}); ok {
		objects = objects[:0]
		for _, item := range items {
			if m, ok := item.(map[string]interface{}); ok {
				objects = append(objects, m)
			}
		}
	}
	for _, obj := range objects {
		u := &unstructured.Unstructured{Object: obj}
		result, err := status.Compute(u)
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s %s %s\n", u.GetName(), result.Status, result.Message)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
