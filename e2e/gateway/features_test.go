// Tests of how the wrapper chooses the supported features, without a cluster (a fake client
// holds the GatewayClass): `cd e2e/gateway && go test -run '^TestFeatures' .`. TestConformance
// itself needs the cluster e2e/gateway/conformance.sh brings up.
package gateway_test

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// optionsWithClass are suite options whose client holds GatewayClass lockstep with the given
// status.supportedFeatures, as the operator writes them.
func optionsWithClass(t *testing.T, names ...string) suite.ConformanceOptions {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := gatewayv1.Install(scheme); err != nil {
		t.Fatal(err)
	}
	class := &gatewayv1.GatewayClass{}
	class.Name = "lockstep"
	class.Spec.ControllerName = "lockstep.dev/gateway-controller"
	for _, n := range names {
		class.Status.SupportedFeatures = append(class.Status.SupportedFeatures,
			gatewayv1.SupportedFeature{Name: gatewayv1.FeatureName(n)})
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(class).Build()
	opts := suite.ConformanceOptions{Client: c}
	opts.GatewayClassName = "lockstep"
	return opts
}

var core = []string{"GRPCRoute", "Gateway", "HTTPRoute", "ReferenceGrant"}

func TestFeaturesLeftForTheSuiteToInfer(t *testing.T) {
	opts := optionsWithClass(t, core...)
	note, err := chooseFeatures(&opts, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.SupportedFeatures) != 0 {
		t.Errorf("SupportedFeatures %v: the suite infers only when it is empty", opts.SupportedFeatures)
	}
	if !strings.Contains(note, "GRPCRoute, Gateway, HTTPRoute, ReferenceGrant") || !strings.Contains(note, "infers") {
		t.Errorf("note %q", note)
	}
}

func TestFeaturesOfTheClassWithRunTest(t *testing.T) {
	for _, set := range []func(*suite.ConformanceOptions){
		func(o *suite.ConformanceOptions) { o.RunTest = "HTTPRouteSimpleSameNamespace" },
		func(o *suite.ConformanceOptions) {
			o.ExemptFeatures = []features.FeatureName{features.SupportGRPCRoute}
		},
	} {
		opts := optionsWithClass(t, core...)
		set(&opts)
		if _, err := chooseFeatures(&opts, map[string]bool{}); err != nil {
			t.Fatal(err)
		}
		got := make([]string, len(opts.SupportedFeatures))
		for i, f := range opts.SupportedFeatures {
			got[i] = string(f)
		}
		if !slices.Equal(got, core) {
			t.Errorf("SupportedFeatures %v, want the class's %v", got, core)
		}
	}
}

func TestFeaturesFlagsWinOverTheClass(t *testing.T) {
	for _, flag := range []string{"supported-features", "all-features"} {
		opts := optionsWithClass(t)
		opts.SupportedFeatures = []features.FeatureName{features.SupportHTTPRoute}
		if _, err := chooseFeatures(&opts, map[string]bool{flag: true}); err != nil {
			t.Fatalf("--%s: %v", flag, err)
		}
		if len(opts.SupportedFeatures) != 1 {
			t.Errorf("--%s: SupportedFeatures %v changed", flag, opts.SupportedFeatures)
		}
	}
}

func TestFeaturesClassWithoutAnyIsAnError(t *testing.T) {
	opts := optionsWithClass(t)
	if _, err := chooseFeatures(&opts, map[string]bool{}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("err %v", err)
	}
	opts.GatewayClassName = "missing"
	if _, err := chooseFeatures(&opts, map[string]bool{}); err == nil {
		t.Error("no error for a missing class")
	}
}
