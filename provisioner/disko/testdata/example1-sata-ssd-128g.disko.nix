{
  disko.devices = builtins.fromJSON ''
    {
      "disk": {
        "sda": {
          "content": {
            "partitions": {
              "sda1": {
                "content": {
                  "extraArgs": [
                    "-n",
                    "EFI"
                  ],
                  "format": "vfat",
                  "mountOptions": [
                    "umask=0077"
                  ],
                  "mountpoint": "/boot",
                  "type": "filesystem"
                },
                "size": "1G",
                "type": "EF00"
              },
              "sda2": {
                "content": {
                  "type": "lvm_pv",
                  "vg": "main"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sda",
          "type": "disk"
        }
      },
      "lvm_vg": {
        "main": {
          "lvs": {
            "home": {
              "content": {
                "extraArgs": [
                  "-L",
                  "home"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/home",
                "type": "filesystem"
              },
              "size": "16G"
            },
            "slash": {
              "content": {
                "extraArgs": [
                  "-L",
                  "slash"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/",
                "type": "filesystem"
              },
              "size": "50G"
            },
            "swap": {
              "content": {
                "extraArgs": [
                  "--label",
                  "swap"
                ],
                "type": "swap"
              },
              "size": "8G"
            }
          },
          "type": "lvm_vg"
        }
      },
      "mdadm": {}
    }
  '';
}
