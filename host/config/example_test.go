package config_test

import (
	"fmt"
	"os"

	"github.com/vigil-run/vigil/host/config"
)

// The plugin paths in these examples are absolute ("/bin/sh") so that they
// exist on any Unix machine; real configs use paths relative to the file.

func ExampleLoadBytes() {
	src := []byte(`
app "shop" {
  preset = "high_availability"

  worker "web" {
    plugin = "/bin/sh"
    pool   = 3
    config {
      port = 8080
    }
  }

  supervisor "storage" {
    strategy = "one_for_all"
    worker "db" { plugin = "/bin/sh" }
  }
}
`)
	app, err := config.LoadBytes(src, "shop.hcl")
	if err != nil {
		config.Render(os.Stderr, err)
		return
	}
	fmt.Println(app.Name, app.Preset, app.LogLevel, app.Root.Strategy, app.Root.MaxRestarts)
	for _, w := range app.Workers() {
		fmt.Println(w.Name, w.IDs, w.ShutdownTimeout, w.Mailbox.Capacity, string(w.Config))
	}
	// Output:
	// shop high_availability info one_for_one 5
	// web [web_0 web_1 web_2] 20s 5000 {"port":8080}
	// db [db] 20s 5000 {}
}

func ExampleFormat() {
	src := []byte(`app "shop" {
  strategy = "one_for_al"
  worker "web" {
    plugin = "/bin/sh"
    max_memory = "256 megs"
  }
}
`)
	_, err := config.LoadBytes(src, "shop.hcl")
	fmt.Print(config.Format(err))
	// Output:
	// shop.hcl:2:14: error: Unknown restart strategy
	//   2 |   strategy = "one_for_al"
	//     |              ^^^^^^^^^^^^
	//   "one_for_al" is not a restart strategy. Use one of "one_for_one", "one_for_all" or "rest_for_one". Did you mean "one_for_all"?
	//
	// shop.hcl:5:18: error: Invalid size for "max_memory"
	//   5 |     max_memory = "256 megs"
	//     |                  ^^^^^^^^^^
	//   "256 megs" is not a size: sizes look like "256MiB", "1GiB", "512KB" or "4096" (bytes); units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024).
	//
	// 2 errors
}

func ExampleParseSize() {
	n, err := config.ParseSize("1.5GiB")
	fmt.Println(n, err, config.FormatSize(n))
	// Output: 1610612736 <nil> 1536MiB
}
