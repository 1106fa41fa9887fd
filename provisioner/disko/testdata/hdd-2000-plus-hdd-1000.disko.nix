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
        },
        "sdb": {
          "content": {
            "partitions": {
              "sdb1": {
                "content": {
                  "type": "lvm_pv",
                  "vg": "large"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdb",
          "type": "disk"
        }
      },
      "lvm_vg": {
        "large": {
          "lvs": {
            "data": {
              "content": {
                "extraArgs": [
                  "-L",
                  "data"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/data",
                "type": "filesystem"
              },
              "size": "100G"
            },
            "swap": {
              "content": {
                "extraArgs": [
                  "--label",
                  "swap"
                ],
                "type": "swap"
              },
              "size": "16G"
            }
          },
          "type": "lvm_vg"
        },
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
            }
          },
          "type": "lvm_vg"
        }
      },
      "mdadm": {}
    }
  '';
}
