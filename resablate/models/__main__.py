"""`python -m resablate.models`: R1 Table 1 and Table 6's parameter counts, regenerated from the builder."""

from resablate.models.tables import cifar_params, table1

if __name__ == "__main__":
    print(
        "R1 Table 1: ImageNet family, option B shortcuts, 1000 classes, "
        "multiply-adds at 224x224 (stride on the 1x1)\n"
    )
    print(table1().to_markdown(index=False))
    print("\nR1 Table 6: CIFAR family, option A shortcuts, 10 classes (plain nets have the same counts)\n")
    print(cifar_params().to_markdown(index=False))
