// A real gRPC server and client (grpc-go, the standard health service: unary Check and
// server-streaming Watch) for lockstep's end-to-end tests of gRPC through the proxy.
//
//	grpc-probe server --listen 127.0.0.1:0
//	    prints "grpc-probe listening ADDR"; service "svc" is SERVING, "flip" changes between
//	    SERVING and NOT_SERVING every 20 ms, "slow" answers Check after 2 s.
//	grpc-probe client --target ADDR --authority HOST [--tls-ca FILE]
//	    unary Check("svc") must be SERVING; Check("missing") must fail with NotFound (a
//	    grpc-status carried in trailers); Watch("flip") must stream 5 updates; a Check with a
//	    300 ms deadline on "slow" must fail with DeadlineExceeded. Prints "ok" lines, exits 0.
//	    With --proxy-timeout: after the streaming check, a Check on "slow" without a client
//	    deadline must fail with DeadlineExceeded from the proxy's route timeout.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type slowHealth struct {
	*health.Server
}

func (s slowHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.GetService() == "slow" {
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
	}
	return s.Server.Check(ctx, req)
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	fs.Parse(args)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	hs := health.NewServer()
	hs.SetServingStatus("svc", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("flip", healthpb.HealthCheckResponse_SERVING)
	go func() {
		serving := true
		for range time.Tick(20 * time.Millisecond) {
			serving = !serving
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("flip", st)
		}
	}()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, slowHealth{hs})
	fmt.Fprintf(os.Stderr, "grpc-probe listening %s\n", lis.Addr())
	return s.Serve(lis)
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	target := fs.String("target", "", "proxy address")
	authority := fs.String("authority", "", ":authority (the routed host)")
	ca := fs.String("tls-ca", "", "CA file: use TLS")
	proxyTimeout := fs.Bool("proxy-timeout", false, "the route times out: expect DeadlineExceeded from the proxy for a slow call")
	fs.Parse(args)
	creds := insecure.NewCredentials()
	if *ca != "" {
		pem, err := os.ReadFile(*ca)
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: *authority})
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(creds), grpc.WithAuthority(*authority))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "svc"})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("unary: %v %v", resp, err)
	}
	fmt.Println("ok unary SERVING")

	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("missing service: want NotFound, got %v", err)
	}
	fmt.Println("ok error NotFound")

	stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "flip"})
	if err != nil {
		return fmt.Errorf("watch: %v", err)
	}
	for i := 0; i < 5; i++ {
		if _, err := stream.Recv(); err != nil {
			return fmt.Errorf("watch message %d: %v", i, err)
		}
	}
	fmt.Println("ok stream 5")

	if *proxyTimeout {
		// The route's timeouts.request (300 ms) passes first: the proxy answers with grpc-status.
		start := time.Now()
		_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "slow"})
		if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > time.Second {
			return fmt.Errorf("proxy timeout: want DeadlineExceeded within 1 s, got %v after %v", err, time.Since(start))
		}
		fmt.Println("ok proxy timeout DeadlineExceeded")
		return nil
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	_, err = hc.Check(short, &healthpb.HealthCheckRequest{Service: "slow"})
	if status.Code(err) != codes.DeadlineExceeded {
		return fmt.Errorf("slow: want DeadlineExceeded, got %v", err)
	}
	fmt.Println("ok deadline DeadlineExceeded")
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: grpc-probe server|client ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "grpc-probe:", err)
		os.Exit(1)
	}
}
